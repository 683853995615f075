"""Sharing kernels fairly: at a limit the longest-idle kernel makes room.

Through the real execution service with real (confined) kernels and small
limits: a new run evicts an idle kernel rather than being refused, its
notebook keeps its stored outputs and its next run is told it has a fresh
kernel; one user cannot hold every place while others wait; a refusal
comes only when every kernel is busy, with a hint to retry; and a kernel
killed while idle is never reported alive.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import TYPE_CHECKING

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from reflow.execution.v1 import execution_pb2
from reflow.notebook.v1 import notebook_pb2
from tests.execution.conftest import finished, stdout_of, with_kernels

if TYPE_CHECKING:
    from tests.execution.conftest import Stack

pytestmark = pytest.mark.parametrize(
    "kernel_settings",
    [with_kernels(max_kernels=2, max_kernels_per_user=2)],
    indirect=True,
)


async def _kernel(stack: Stack, notebook_id: str, user: str) -> execution_pb2.Kernel:
    reply = await stack.execution.GetKernel(
        execution_pb2.GetKernelRequest(notebook_id=notebook_id),
        metadata=stack.metadata(user),
    )
    return reply.kernel


async def _running_a_cell(stack: Stack, notebook_id: str, user: str) -> bool:
    try:
        return bool((await _kernel(stack, notebook_id, user)).running_cell_id)
    except grpc.aio.AioRpcError as error:
        # The run has not reached the service yet: no session, no kernel.
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return False
        raise


async def test_at_the_limit_the_longest_idle_kernel_makes_room(stack: Stack) -> None:
    first, first_cell = await stack.notebook("x = 1\nprint('first')", user="alice")
    second, _ = await stack.notebook("y = 2", user="bob")
    await stack.run(first, first_cell, user="alice")
    await stack.run(second, user="bob")
    third, third_cell = await stack.notebook("print('third')", user="carol")

    events = await stack.run(third, third_cell, user="carol")

    assert stdout_of(events, third_cell) == "third\n"
    assert (await _kernel(stack, first, "alice")).state == (
        execution_pb2.KERNEL_STATE_DEAD
    )
    assert (await _kernel(stack, second, "bob")).state != (
        execution_pb2.KERNEL_STATE_DEAD
    )
    notebook = await stack.notebooks.GetNotebook(
        notebook_pb2.GetNotebookRequest(notebook_id=first),
        metadata=stack.metadata("alice"),
    )
    assert notebook.notebook.cells[0].result.stdout == "first\n"

    again = await stack.run(first, first_cell, user="alice")

    started = [
        e.kernel_state_changed.reason
        for e in again
        if e.HasField("kernel_state_changed")
        and e.kernel_state_changed.reason.startswith("started")
    ]
    assert len(started) == 1
    assert "to make room for other notebooks" in started[0]
    assert "stored outputs are kept" in started[0]


async def test_a_user_at_their_own_limit_gives_up_their_own_idle_kernel(
    stack: Stack,
) -> None:
    first, _ = await stack.notebook("a = 1", user="alice")
    second, _ = await stack.notebook("b = 2", user="alice")
    await stack.run(first, user="alice")
    await stack.run(second, user="alice")
    third, cell = await stack.notebook("print('mine')", user="alice")

    events = await stack.run(third, cell, user="alice")

    assert finished(events)[cell].status == notebook_pb2.CELL_STATUS_SUCCESS
    states = [(await _kernel(stack, n, "alice")).state for n in (first, second)]
    assert states.count(execution_pb2.KERNEL_STATE_DEAD) == 1


async def test_when_every_kernel_is_busy_a_run_is_refused_with_a_retry_hint(
    stack: Stack,
) -> None:
    busy = []
    for user in ("alice", "bob"):
        notebook_id, cell = await stack.notebook(
            "import time\ntime.sleep(30)", user=user
        )
        busy.append(
            (
                notebook_id,
                user,
                asyncio.ensure_future(stack.run(notebook_id, cell, user=user)),
            )
        )
    for notebook_id, user, _ in busy:
        for _ in range(200):
            if await _running_a_cell(stack, notebook_id, user):
                break
            await asyncio.sleep(0.05)
    third, cell = await stack.notebook("print('later')", user="carol")

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stack.run(third, cell, user="carol")

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "every one is busy" in (refused.value.details() or "")
    status = status_pb2.Status.FromString(
        dict(refused.value.trailing_metadata() or ())["grpc-status-details-bin"]
    )
    retry = error_details_pb2.RetryInfo()
    assert any(detail.Unpack(retry) for detail in status.details)
    assert retry.retry_delay.seconds > 0
    for notebook_id, user, task in busy:
        await stack.execution.InterruptKernel(
            execution_pb2.InterruptKernelRequest(notebook_id=notebook_id),
            metadata=stack.metadata(user),
        )
        await task


async def test_a_kernel_killed_while_idle_is_reported_dead(stack: Stack) -> None:
    notebook_id, _ = await stack.notebook("z = 3")
    await stack.run(notebook_id)
    pid = (await _kernel(stack, notebook_id, "alice")).pid
    assert pid > 0

    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        kernel = await _kernel(stack, notebook_id, "alice")
        if kernel.state == execution_pb2.KERNEL_STATE_DEAD:
            break
        await asyncio.sleep(0.02)

    assert kernel.state == execution_pb2.KERNEL_STATE_DEAD
    assert kernel.pid == 0
    listed = await stack.execution.ListKernels(
        execution_pb2.ListKernelsRequest(), metadata=stack.metadata()
    )
    assert notebook_id not in [k.notebook_id for k in listed.kernels]


async def test_deleting_a_notebook_stops_its_kernel(stack: Stack) -> None:
    notebook_id, _ = await stack.notebook("w = 4")
    await stack.run(notebook_id)
    pid = (await _kernel(stack, notebook_id, "alice")).pid

    await stack.notebooks.DeleteNotebook(
        notebook_pb2.DeleteNotebookRequest(notebook_id=notebook_id),
        metadata=stack.metadata(),
    )

    for _ in range(250):
        if not _running(pid):
            break
        await asyncio.sleep(0.02)
    assert not _running(pid)
    assert (await _kernel(stack, notebook_id, "alice")).pid == 0
    listed = await stack.execution.ListKernels(
        execution_pb2.ListKernelsRequest(), metadata=stack.metadata()
    )
    assert notebook_id not in [k.notebook_id for k in listed.kernels]


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as file:
            stat = file.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"
