"""Reactive semantics over real gRPC: notebook + execution services, real kernels."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc
import pytest

from reflow.execution.v1 import execution_pb2
from reflow.notebook.v1 import notebook_pb2
from tests.execution.conftest import REPLICA_ID, finished, stdout_of, text_outputs

if TYPE_CHECKING:
    from tests.execution.conftest import Stack

Status = notebook_pb2.CellStatus


async def test_running_a_cell_runs_its_chain_in_order(stack: Stack) -> None:
    nb, a, b, c = await stack.notebook("x = 1", "y = x + 1", "print(y * 10)")

    events = await stack.run(nb, a)

    ran = [e.cell_id for e in events if e.HasField("cell_started")]
    assert ran == [a, b, c]
    assert stdout_of(events, c) == "20\n"
    assert events[-1].run_finished.status == Status.CELL_STATUS_SUCCESS


async def test_diamond_runs_each_cell_once_with_the_join_last(stack: Stack) -> None:
    nb, top, left, right, join = await stack.notebook(
        "x = 2", "a = x * 3", "b = x + 1", "print(a + b)"
    )

    events = await stack.run(nb, top)

    ran = [e.cell_id for e in events if e.HasField("cell_started")]
    assert ran == [top, left, right, join]
    assert stdout_of(events, join) == "9\n"


async def test_editing_upstream_and_rerunning_updates_downstream(stack: Stack) -> None:
    nb, a, b = await stack.notebook("x = 1", "x * 100")
    await stack.run(nb, a)

    await stack.edit(nb, a, "x = 5")
    events = await stack.run(nb, a)

    assert text_outputs(events, b) == ["500"]


async def test_running_a_downstream_cell_on_a_fresh_kernel_runs_its_ancestors(
    stack: Stack,
) -> None:
    nb, a, b = await stack.notebook("x = 41", "x + 1")

    events = await stack.run(nb, b)

    assert text_outputs(events, b) == ["42"]
    assert finished(events)[a].status == Status.CELL_STATUS_SUCCESS


async def test_a_rerun_cell_loses_the_names_it_no_longer_defines(stack: Stack) -> None:
    nb, a, b = await stack.notebook("x = 1\ny = 2", "print('y' in globals())")
    await stack.run(nb, a)

    await stack.edit(nb, a, "x = 1")
    await stack.edit(nb, b, "print('y' in globals())")
    events = await stack.run(nb, a, b)

    assert stdout_of(events, b) == "False\n"


async def test_deleting_a_cell_removes_its_names(
    stack: Stack,
) -> None:
    nb, a, b = await stack.notebook(
        "x = 1", "try:\n    print(x)\nexcept NameError:\n    print('gone')"
    )
    await stack.run(nb, a)

    await stack.notebooks.DeleteCell(
        notebook_pb2.DeleteCellRequest(notebook_id=nb, cell_id=a),
        metadata=stack.metadata(),
    )
    events = await stack.run(nb, b)

    assert stdout_of(events, b) == "gone\n"


async def test_deleting_a_cell_reruns_its_dependents_without_being_asked(
    stack: Stack,
) -> None:
    nb, a, b = await stack.notebook(
        "x = 1", "try:\n    print(x)\nexcept NameError:\n    print('gone')"
    )
    await stack.run(nb, a)
    watch = stack.execution.WatchExecution(
        execution_pb2.WatchExecutionRequest(notebook_id=nb), metadata=stack.metadata()
    )

    await stack.notebooks.DeleteCell(
        notebook_pb2.DeleteCellRequest(notebook_id=nb, cell_id=a),
        metadata=stack.metadata(),
    )
    seen = []
    async for reply in watch:
        seen.append(reply.event)
        if reply.event.HasField("run_finished"):
            break
    watch.cancel()

    assert [e.cell_id for e in seen if e.HasField("cell_started")] == [b]
    assert stdout_of(seen, b) == "gone\n"


async def test_multiple_definitions_are_errors_and_do_not_run(stack: Stack) -> None:
    nb, a, b = await stack.notebook("x = 1", "x = 2")

    events = await stack.run(nb, a, b)

    results = finished(events)
    assert results[a].status == results[b].status == Status.CELL_STATUS_ERROR
    assert "also defined" in results[a].error.message
    assert not [e for e in events if e.HasField("cell_started")]


async def test_cycles_are_errors_on_every_member(stack: Stack) -> None:
    nb, a, b = await stack.notebook("x = y + 1", "y = x + 1")

    events = await stack.run(nb, a)

    results = finished(events)
    assert {results[a].status, results[b].status} == {Status.CELL_STATUS_ERROR}
    assert "cycle" in results[a].error.message


async def test_descendants_of_a_failing_cell_are_blocked_naming_it(
    stack: Stack,
) -> None:
    nb, a, b, c = await stack.notebook("x = 1 / 0", "y = x", "z = y")

    events = await stack.run(nb, a)

    results = finished(events)
    assert results[a].status == Status.CELL_STATUS_ERROR
    assert results[a].error.type == "ZeroDivisionError"
    assert results[b].status == results[c].status == Status.CELL_STATUS_BLOCKED
    assert results[b].blocked_by_cell_id == results[c].blocked_by_cell_id == a


async def test_printing_in_a_loop_streams_batches_before_the_cell_ends(
    stack: Stack,
) -> None:
    nb, a = await stack.notebook(
        "import time\nfor i in range(5):\n    print(i, flush=True)\n    time.sleep(0.1)"
    )

    events = await stack.run(nb, a)

    chunks = [e for e in events if e.HasField("stream_chunk")]
    assert len(chunks) >= 3
    assert "".join(c.stream_chunk.text for c in chunks) == "0\n1\n2\n3\n4\n"


async def test_results_are_recorded_on_the_notebook_service(stack: Stack) -> None:
    nb, a = await stack.notebook("print('hi')\n6 * 7")

    await stack.run(nb, a)
    await stack.recorder.wait_idle()
    got = await stack.notebooks.GetNotebook(
        notebook_pb2.GetNotebookRequest(notebook_id=nb), metadata=stack.metadata()
    )

    cell = got.notebook.cells[0]
    assert cell.status == Status.CELL_STATUS_SUCCESS
    assert cell.result.stdout == "hi\n"
    assert [o.text for o in cell.result.outputs] == ["42"]


async def test_watchers_see_another_clients_run(stack: Stack) -> None:
    nb, a = await stack.notebook("print('shared')")
    watch = stack.execution.WatchExecution(
        execution_pb2.WatchExecutionRequest(notebook_id=nb), metadata=stack.metadata()
    )

    events = await stack.run(nb, a)
    seen = []
    async for reply in watch:
        seen.append(reply.event)
        if reply.event.HasField("run_finished"):
            break
    watch.cancel()

    assert [e.sequence for e in seen][-len(events) :] == [e.sequence for e in events]


async def test_another_users_notebook_cannot_be_run(stack: Stack) -> None:
    nb, a = await stack.notebook("x = 1")

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stack.run(nb, a, user="mallory")

    assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_unknown_cell_is_invalid(stack: Stack) -> None:
    nb, _ = await stack.notebook("x = 1")

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stack.run(nb, "nosuchcell")

    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_get_and_list_kernels(stack: Stack) -> None:
    nb, a = await stack.notebook("x = 1")
    await stack.run(nb, a)

    got = await stack.execution.GetKernel(
        execution_pb2.GetKernelRequest(notebook_id=nb), metadata=stack.metadata()
    )
    listed = await stack.execution.ListKernels(
        execution_pb2.ListKernelsRequest(), metadata=stack.metadata()
    )
    theirs = await stack.execution.ListKernels(
        execution_pb2.ListKernelsRequest(), metadata=stack.metadata("bob")
    )

    assert got.kernel.state == execution_pb2.KERNEL_STATE_IDLE
    assert got.kernel.execution_count == 1
    assert got.kernel.memory_bytes > 0
    assert [k.notebook_id for k in listed.kernels] == [nb]
    assert got.kernel.replica_id == listed.kernels[0].replica_id == REPLICA_ID
    assert list(theirs.kernels) == []


async def test_restart_gives_a_fresh_kernel(stack: Stack) -> None:
    # A mark kept by the process itself: a confined kernel's pid is the same
    # in every fresh namespace, so it cannot tell processes apart.
    mark = (
        "import builtins, uuid\n"
        "x = builtins.__dict__.setdefault('mark', uuid.uuid4().hex)"
    )
    nb, a, b = await stack.notebook(mark, "print(x)")
    first = await stack.run(nb, a, b)

    await stack.execution.RestartKernel(
        execution_pb2.RestartKernelRequest(notebook_id=nb), metadata=stack.metadata()
    )
    events = await stack.run(nb, b)

    # On the fresh kernel, b's ancestor a runs first again, in a new process.
    assert [e.cell_id for e in events if e.HasField("cell_started")] == [a, b]
    assert stdout_of(events, b) != stdout_of(first, b)


async def test_shutdown_then_get_kernel_shows_it_dead(stack: Stack) -> None:
    nb, a = await stack.notebook("x = 1")
    await stack.run(nb, a)

    await stack.execution.ShutdownKernel(
        execution_pb2.ShutdownKernelRequest(notebook_id=nb), metadata=stack.metadata()
    )
    got = await stack.execution.GetKernel(
        execution_pb2.GetKernelRequest(notebook_id=nb), metadata=stack.metadata()
    )

    assert got.kernel.state == execution_pb2.KERNEL_STATE_DEAD
    assert got.kernel.pid == 0


async def test_kernel_rpcs_on_a_notebook_without_one_are_not_found(
    stack: Stack,
) -> None:
    nb, _ = await stack.notebook("x = 1")

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stack.execution.GetKernel(
            execution_pb2.GetKernelRequest(notebook_id=nb), metadata=stack.metadata()
        )

    assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_run_asked_for_behind_another_is_announced_queued_at_once(
    stack: Stack,
) -> None:
    nb, slow, other = await stack.notebook(
        "import time\nprint('started', flush=True)\ntime.sleep(2)", "y = 2"
    )
    watch = stack.execution.WatchExecution(
        execution_pb2.WatchExecutionRequest(notebook_id=nb), metadata=stack.metadata()
    )
    first = asyncio.create_task(stack.run(nb, slow))
    async for reply in watch:
        if reply.event.HasField("stream_chunk"):
            break

    second = asyncio.create_task(stack.run(nb, other))
    async for reply in watch:
        if reply.event.HasField("cell_queued"):
            queued = reply.event
            break
    watch.cancel()
    await first
    events = await second

    assert queued.cell_id == other
    assert finished(events)[other].status == Status.CELL_STATUS_SUCCESS
