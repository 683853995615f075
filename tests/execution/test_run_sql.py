"""SQL cells through the service: DuckDB over DataFrames, parameters, PostgreSQL."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

from reflow.notebook.v1 import notebook_pb2
from tests.execution.conftest import finished, stdout_of

if TYPE_CHECKING:
    from tests.execution.conftest import Stack

SQL = notebook_pb2.CELL_TYPE_SQL
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


async def test_duckdb_queries_a_dataframe_from_another_cell_and_reruns_with_it(
    stack: Stack,
) -> None:
    nb, frame = await stack.notebook(
        "import pandas as pd\nsales = pd.DataFrame({'amount': [1, 2, 3]})"
    )
    query = await stack.add(
        nb, "SELECT SUM(amount) AS total FROM sales", cell_type=SQL, result_name="t"
    )
    use = await stack.add(nb, "print(int(t['total'][0]))")

    first = await stack.run(nb, frame)
    await stack.edit(
        nb, frame, "import pandas as pd\nsales = pd.DataFrame({'amount': [10, 20]})"
    )
    second = await stack.run(nb, frame)

    assert [e.cell_id for e in first if e.HasField("cell_started")] == [
        frame,
        query,
        use,
    ]
    assert stdout_of(first, use) == "6\n"
    assert stdout_of(second, use) == "30\n"


async def test_placeholders_are_bound_not_interpolated(stack: Stack) -> None:
    nb, a = await stack.notebook('name = "O\'Brien"\nlimit = 2')
    query = await stack.add(
        nb, "SELECT {name} AS who, {limit} * 10 AS n", cell_type=SQL, result_name="r"
    )
    check = await stack.add(nb, "print(r['who'][0], r['n'][0])")

    events = await stack.run(nb, a)

    assert finished(events)[query].status == notebook_pb2.CELL_STATUS_SUCCESS
    assert stdout_of(events, check) == "O'Brien 20\n"


async def test_sql_error_is_a_cell_error(stack: Stack) -> None:
    nb = (await stack.notebook())[0]
    query = await stack.add(nb, "SELECT * FROM no_such_table", cell_type=SQL)

    events = await stack.run(nb, query)

    result = finished(events)[query]
    assert result.status == notebook_pb2.CELL_STATUS_ERROR
    assert "no_such_table" in result.error.message


@pytest.mark.postgres
async def test_postgresql_through_the_notebooks_connection(stack: Stack) -> None:
    table = f"reflow_test_{uuid.uuid4().hex[:8]}"
    nb, setup = await stack.notebook(
        "import sqlalchemy as sa\n"
        f"engine = sa.create_engine({POSTGRES_URL!r})\n"
        "with engine.begin() as _c:\n"
        f"    _c.execute(sa.text('CREATE TABLE {table} (n int)'))\n"
        f"    _c.execute(sa.text('INSERT INTO {table} VALUES (1), (2), (3)'))\n"
        "low = 1"
    )
    await stack.notebooks.SetDatabaseConnection(
        notebook_pb2.SetDatabaseConnectionRequest(
            notebook_id=nb, database_url=POSTGRES_URL
        ),
        metadata=stack.metadata(),
    )
    query = await stack.add(
        nb,
        f"SELECT SUM(n) AS s FROM {table} WHERE n > {{low}}",
        cell_type=SQL,
        result_name="pg",
    )
    check = await stack.add(nb, "print(int(pg['s'][0]))")
    cleanup = await stack.add(
        nb,
        f"with engine.begin() as _c:\n    _c.execute(sa.text('DROP TABLE {table}'))",
    )

    events = await stack.run(nb, setup)
    await stack.run(nb, cleanup)

    assert finished(events)[query].status == notebook_pb2.CELL_STATUS_SUCCESS
    assert stdout_of(events, check) == "5\n"


async def test_connection_failure_hides_the_password(stack: Stack) -> None:
    nb = (await stack.notebook())[0]
    await stack.notebooks.SetDatabaseConnection(
        notebook_pb2.SetDatabaseConnectionRequest(
            notebook_id=nb, database_url="postgresql+psycopg://u:s3cret@127.0.0.1:1/x"
        ),
        metadata=stack.metadata(),
    )
    query = await stack.add(nb, "SELECT 1", cell_type=SQL)

    events = await stack.run(nb, query)

    result = finished(events)[query]
    assert result.status == notebook_pb2.CELL_STATUS_ERROR
    assert "s3cret" not in result.error.message + result.error.traceback
