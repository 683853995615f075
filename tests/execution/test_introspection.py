"""Complete, ListVariables and GetTableRows: asked of real kernels through
the execution service, while cells run and after they ran."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc
import pytest

from reflow.execution.v1 import execution_pb2
from reflow.notebook.v1 import notebook_pb2
from tests.execution.conftest import finished, outputs_of, stdout_of

if TYPE_CHECKING:
    from tests.execution.conftest import Stack

TIMEOUT_S = 60.0
# Prints numbered lines until interrupted: it can only end by interrupt.
ENDLESS = (
    "import time\ni = 0\nwhile True:\n    print(i)\n    i += 1\n    time.sleep(0.01)"
)


async def complete(
    stack: Stack, notebook_id: str, code: str, cursor: int | None = None
) -> execution_pb2.CompleteResponse:
    request = execution_pb2.CompleteRequest(
        notebook_id=notebook_id,
        code=code,
        cursor_offset=len(code) if cursor is None else cursor,
    )
    return await stack.execution.Complete(request, metadata=stack.metadata())


async def variables(
    stack: Stack, notebook_id: str
) -> dict[str, execution_pb2.Variable]:
    request = execution_pb2.ListVariablesRequest(notebook_id=notebook_id)
    reply = await stack.execution.ListVariables(request, metadata=stack.metadata())
    return {variable.name: variable for variable in reply.variables}


async def table_rows(
    stack: Stack, notebook_id: str, table_id: str, offset: int, limit: int = 0
) -> notebook_pb2.Table:
    request = execution_pb2.GetTableRowsRequest(
        notebook_id=notebook_id, table_id=table_id, offset=offset, limit=limit
    )
    reply = await stack.execution.GetTableRows(request, metadata=stack.metadata())
    return reply.table


async def until_printed(
    events: list[execution_pb2.ExecutionEvent], arrived: asyncio.Event
) -> None:
    while not any(event.HasField("stream_chunk") for event in events):
        arrived.clear()
        await arrived.wait()


async def test_queries_are_answered_while_a_cell_runs_and_its_output_stays_whole(
    stack: Stack,
) -> None:
    notebook_id, first, endless = await stack.notebook("numbers = [1, 2, 3]", ENDLESS)
    await stack.run(notebook_id, first)
    events: list[execution_pb2.ExecutionEvent] = []
    arrived = asyncio.Event()

    async def follow() -> None:
        stream = stack.execution.RunCells(
            execution_pb2.RunCellsRequest(notebook_id=notebook_id, cell_ids=[endless]),
            metadata=stack.metadata(),
            timeout=TIMEOUT_S,
        )
        async for reply in stream:
            events.append(reply.event)
            arrived.set()

    run = asyncio.create_task(follow())
    async with asyncio.timeout(TIMEOUT_S):
        await until_printed(events, arrived)
        completions = await complete(stack, notebook_id, "numbers.app")
        found = await variables(stack, notebook_id)
        # The cell never ends by itself: these answers came while it ran.
        assert not finished(events)
        await stack.execution.InterruptKernel(
            execution_pb2.InterruptKernelRequest(notebook_id=notebook_id),
            metadata=stack.metadata(),
        )
        await run

    assert [c.text for c in completions.completions] == ["append"]
    assert completions.prefix_length == len("app")
    assert found["numbers"].type == "list"
    assert found["numbers"].shape == "3"
    assert found["numbers"].repr == "[1, 2, 3]"
    assert found["numbers"].cell_id == first
    assert found["i"].cell_id == endless
    assert finished(events)[endless].status == notebook_pb2.CELL_STATUS_INTERRUPTED
    printed = stdout_of(events, endless).split()
    assert printed == [str(n) for n in range(len(printed))]


async def test_completions_come_from_the_live_namespace(stack: Stack) -> None:
    notebook_id, cell = await stack.notebook("import pandas as pd\nframe_of_data = 1")
    await stack.run(notebook_id, cell)

    names = [c.text for c in (await complete(stack, notebook_id, "frame_")).completions]
    members = (await complete(stack, notebook_id, "pd.read_cs")).completions

    assert names == ["frame_of_data"]
    assert [(c.text, c.kind) for c in members] == [("read_csv", "function")]


async def test_without_a_kernel_answers_are_empty_and_start_none(stack: Stack) -> None:
    notebook_id, _cell = await stack.notebook("x = 1")

    completions = await complete(stack, notebook_id, "x")
    found = await variables(stack, notebook_id)

    assert not completions.kernel_running
    assert list(completions.completions) == []
    assert found == {}
    assert stack.sessions.of_owner("alice") == []


async def test_a_table_pages_beyond_its_output(stack: Stack) -> None:
    code = "import pandas as pd\ndf = pd.DataFrame({'n': range(250)})\ndf"
    notebook_id, cell = await stack.notebook(code)
    shown = outputs_of(await stack.run(notebook_id, cell), cell)[0].table

    page = await table_rows(stack, notebook_id, shown.table_id, offset=200)

    assert len(shown.rows) == 100
    assert shown.truncated
    assert page.row_offset == 200
    assert page.total_rows == 250
    assert not page.truncated
    assert [row.values[0].number_value for row in page.rows] == list(range(200, 250))
    assert [column.name for column in page.columns] == ["n"]


async def test_a_table_of_an_earlier_run_is_failed_precondition(stack: Stack) -> None:
    code = "import pandas as pd\npd.DataFrame({'n': range(150)})"
    notebook_id, cell = await stack.notebook(code)
    table_id = outputs_of(await stack.run(notebook_id, cell), cell)[0].table.table_id
    await stack.run(notebook_id, cell)

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await table_rows(stack, notebook_id, table_id, offset=100)

    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "re-run the cell" in (error.value.details() or "")


async def test_a_table_after_a_restart_is_failed_precondition(stack: Stack) -> None:
    code = "import pandas as pd\npd.DataFrame({'n': range(150)})"
    notebook_id, cell = await stack.notebook(code)
    table_id = outputs_of(await stack.run(notebook_id, cell), cell)[0].table.table_id
    await stack.execution.RestartKernel(
        execution_pb2.RestartKernelRequest(notebook_id=notebook_id),
        metadata=stack.metadata(),
    )

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await table_rows(stack, notebook_id, table_id, offset=100)

    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_cursor_past_the_code_is_invalid_argument(stack: Stack) -> None:
    notebook_id, _cell = await stack.notebook("x = 1")

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await complete(stack, notebook_id, "abc", cursor=4)

    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cursor_offset" in (error.value.details() or "")


async def test_another_users_notebook_is_not_found(stack: Stack) -> None:
    notebook_id, cell = await stack.notebook("x = 1", user="bob")
    await stack.run(notebook_id, cell, user="bob")

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await variables(stack, notebook_id)

    assert error.value.code() == grpc.StatusCode.NOT_FOUND
