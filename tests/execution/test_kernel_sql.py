"""SQL cells in a real kernel: DuckDB over DataFrames, SQLite, PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from google.protobuf import json_format

from reflow.notebook.v1 import notebook_pb2
from services.execution.kernel.outputs import TABLE_MIME
from services.execution.kernel.sql import mask_secrets
from tests.execution.worker_harness import CellRun, KernelHarness, start_kernel

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

SQL = notebook_pb2.CELL_TYPE_SQL
SUCCESS = notebook_pb2.CELL_STATUS_SUCCESS
ERROR = notebook_pb2.CELL_STATUS_ERROR
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="module")
def kernel() -> Iterator[KernelHarness]:
    with start_kernel() as harness:
        harness.run(
            "import pandas as pd\n"
            "sales = pd.DataFrame({'region': ['n', 's', 'n'], 'amount': [1, 2, 3]})"
        )
        yield harness


def rows(run: CellRun) -> list[object]:
    """The rows of the cell's one table output."""
    assert run.status == SUCCESS, run.error
    (output,) = run.outputs
    assert output.mime_type == TABLE_MIME
    return [json.loads(json_format.MessageToJson(row)) for row in output.table.rows]


def sql(kernel: KernelHarness, code: str, **options: Any) -> CellRun:
    return kernel.run(code, cell_type=SQL, **options)


def test_duckdb_queries_a_dataframe_by_name(kernel: KernelHarness) -> None:
    run = sql(
        kernel,
        "SELECT region, MAX(amount) AS top FROM sales GROUP BY region ORDER BY region",
        result_name="tops",
    )
    bound = kernel.run("tops['top'].tolist()")

    assert rows(run) == [["n", 3], ["s", 2]]
    assert bound.texts == ["[3, 2]"]


def test_placeholders_are_bound_not_interpolated(kernel: KernelHarness) -> None:
    kernel.run("who = \"O'Brien' OR '1'='1\"\nthreshold = 1")

    run = sql(
        kernel, "SELECT {who} AS who, {threshold} + 1 AS next, {who} = {who} AS same"
    )

    assert rows(run) == [["O'Brien' OR '1'='1", 2, True]]


def test_placeholder_with_a_dataframe_is_a_table(kernel: KernelHarness) -> None:
    kernel.run("floor = 1")

    run = sql(kernel, "SELECT COUNT(*) AS n FROM {sales} WHERE amount > {floor}")

    assert rows(run) == [[2]]


def test_missing_placeholder_is_a_name_error(kernel: KernelHarness) -> None:
    run = sql(kernel, "SELECT {nowhere}")

    assert run.status == ERROR
    assert run.error.type == "NameError"
    assert run.error.traceback == "NameError: name 'nowhere' is not defined\n"


def test_sql_error_is_a_short_cell_error(kernel: KernelHarness) -> None:
    run = sql(kernel, "SELECT * FROM no_such_table")

    assert run.status == ERROR
    assert run.error.type == "CatalogException"
    assert "no_such_table" in run.error.message
    assert run.error.traceback == f"CatalogException: {run.error.message}\n"
    assert list(run.error.frames) == []


def test_duckdb_tables_persist_between_cells(kernel: KernelHarness) -> None:
    sql(kernel, "CREATE TABLE kept AS SELECT 42 AS answer")

    run = sql(kernel, "SELECT answer FROM kept")

    assert rows(run) == [[42]]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    path = tmp_path / "people.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE people (name TEXT, age INTEGER)")
        connection.executemany(
            "INSERT INTO people VALUES (?, ?)",
            [("ann", 31), ("bob", 25), ("cy", 40)],
        )
    connection.close()
    return f"sqlite:///{path}"


def test_sqlite_through_sqlalchemy(kernel: KernelHarness, sqlite_url: str) -> None:
    kernel.run("min_age = 30")

    run = sql(
        kernel,
        "SELECT name, 'a :b' AS colon FROM people WHERE age > {min_age} ORDER BY name",
        database_url=sqlite_url,
        result_name="older",
    )
    bound = kernel.run("list(older['name'])")

    assert rows(run) == [["ann", "a :b"], ["cy", "a :b"]]
    assert bound.texts == ["['ann', 'cy']"]


def test_statement_without_rows_reports_a_count(
    kernel: KernelHarness, sqlite_url: str
) -> None:
    run = sql(kernel, "DELETE FROM people WHERE age < 30", database_url=sqlite_url)

    assert rows(run) == [[1]]


def test_dataframe_placeholder_needs_duckdb(
    kernel: KernelHarness, sqlite_url: str
) -> None:
    run = sql(kernel, "SELECT * FROM {sales}", database_url=sqlite_url)

    assert run.status == ERROR
    assert run.error.type == "TypeError"


def test_connection_failure_hides_the_password(kernel: KernelHarness) -> None:
    run = sql(
        kernel, "SELECT 1", database_url="postgresql+psycopg://u:s3cret@127.0.0.1:1/x"
    )

    assert run.status == ERROR
    assert run.error.type == "OperationalError"
    assert "127.0.0.1" in run.error.message
    assert "s3cret" not in run.error.message
    assert "s3cret" not in run.error.traceback


@pytest.fixture
def postgres() -> Iterator[str]:
    """A unique table name in the local PostgreSQL, dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    try:
        connection = psycopg.connect(
            "postgresql://postgres@127.0.0.1:5432/test",
            connect_timeout=3,
            autocommit=True,
        )
    except psycopg.OperationalError as error:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432/test is not reachable: {error}")
    table = f"reflow_kernel_{uuid.uuid4().hex[:12]}"
    try:
        yield table
    finally:
        connection.execute(f"DROP TABLE IF EXISTS {table}")
        connection.close()


@pytest.mark.postgres
def test_postgresql_with_bound_parameters(kernel: KernelHarness, postgres: str) -> None:
    kernel.run('pg_name = "it\'s"\npg_amount = 7')
    sql(
        kernel,
        f"CREATE TABLE {postgres} (name text, amount int)",
        database_url=POSTGRES_URL,
    )
    sql(
        kernel,
        f"INSERT INTO {postgres} VALUES ({{pg_name}}, {{pg_amount}}), ('other', 1)",
        database_url=POSTGRES_URL,
    )

    run = sql(
        kernel,
        f"SELECT name, amount::text AS amount, '50%' AS pct FROM {postgres}"
        " WHERE name = {pg_name} AND name LIKE 'it%'",
        database_url=POSTGRES_URL,
        result_name="pg_rows",
    )

    assert rows(run) == [["it's", "7", "50%"]]


@pytest.mark.postgres
def test_database_message_quoting_the_password_is_masked(
    kernel: KernelHarness, postgres: str
) -> None:
    # The server trusts local connections, so any password gets in.
    url = "postgresql+psycopg://postgres:s3cret@127.0.0.1:5432/test"

    run = sql(kernel, "SELECT 's3cret'::int", database_url=url)

    assert run.status == ERROR
    assert "invalid input syntax" in run.error.message
    assert "s3cret" not in run.error.message
    assert "***" in run.error.message


@pytest.mark.parametrize(
    ("message", "url"),
    [
        ("failed for postgresql://u:p%40ss@h/db", "postgresql://u:p%40ss@h/db"),
        ("password 'p@ss' rejected", "postgresql://u:p%40ss@h/db"),
        ("bad password=hunter22", "mysql://h/db?user=u&password=hunter22"),
    ],
)
def test_mask_secrets_removes_every_form_of_the_password(
    message: str, url: str
) -> None:
    masked = mask_secrets(message, url)

    assert "p@ss" not in masked
    assert "p%40ss" not in masked
    assert "hunter22" not in masked
    assert "***" in masked
