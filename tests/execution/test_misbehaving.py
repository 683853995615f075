"""Code that tries to knock the service over: it must not."""

from __future__ import annotations

import asyncio
import resource
import time
from typing import TYPE_CHECKING

import grpc
import pytest

from reflow.execution.v1 import execution_pb2
from reflow.notebook.v1 import notebook_pb2
from tests.execution.conftest import finished, stdout_of, text_outputs, with_kernels

if TYPE_CHECKING:
    from tests.execution.conftest import Stack

Status = notebook_pb2.CellStatus


async def _interrupt_when_running(stack: Stack, notebook_id: str) -> float:
    """Interrupt as soon as the notebook's kernel is busy; return when it was."""
    await _wait_busy(stack, notebook_id)
    request = execution_pb2.InterruptKernelRequest(notebook_id=notebook_id)
    while True:
        reply = await stack.execution.InterruptKernel(
            request, metadata=stack.metadata()
        )
        if reply.interrupted:
            return time.monotonic()
        await asyncio.sleep(0.02)


async def _wait_busy(stack: Stack, notebook_id: str) -> None:
    request = execution_pb2.GetKernelRequest(notebook_id=notebook_id)
    busy = execution_pb2.KERNEL_STATE_BUSY
    while True:
        try:
            reply = await stack.execution.GetKernel(request, metadata=stack.metadata())
            if reply.kernel.state == busy:
                return
        except grpc.aio.AioRpcError:
            pass  # no kernel yet
        await asyncio.sleep(0.02)


async def test_infinite_loop_is_interrupted_and_state_survives(stack: Stack) -> None:
    nb, a, b = await stack.notebook("kept = 7", "while True:\n    pass")
    await stack.run(nb, a)

    run = asyncio.create_task(stack.run(nb, b))
    sent = await _interrupt_when_running(stack, nb)
    events = await asyncio.wait_for(run, timeout=10)
    delivered = time.monotonic()
    check = await stack.run(nb, await stack.add(nb, "kept"))

    result = finished(events)[b]
    assert result.status == Status.CELL_STATUS_INTERRUPTED
    assert result.error.type == "KeyboardInterrupt"
    assert delivered - sent < 1.0
    assert text_outputs(check, check[-2].cell_id) == ["7"]


async def test_interrupt_drops_the_rest_of_the_run(stack: Stack) -> None:
    nb, a, b = await stack.notebook("import time\nx = 1\ntime.sleep(30)", "y = x")

    run = asyncio.create_task(stack.run(nb, a))
    await _interrupt_when_running(stack, nb)
    events = await asyncio.wait_for(run, timeout=10)

    assert [e.cell_id for e in events if e.HasField("cell_started")] == [a]
    assert finished(events)[b].status == Status.CELL_STATUS_INTERRUPTED
    assert events[-1].run_finished.status == Status.CELL_STATUS_INTERRUPTED


async def test_a_cell_that_swallows_interrupts_gets_its_kernel_restarted(
    stack: Stack,
) -> None:
    nb, a = await stack.notebook(
        "while True:\n    try:\n        while True:\n            pass\n"
        "    except KeyboardInterrupt:\n        pass"
    )

    run = asyncio.create_task(stack.run(nb, a))
    await _interrupt_when_running(stack, nb)
    events = await asyncio.wait_for(run, timeout=15)
    after = await stack.run(nb, await stack.add(nb, "1 + 1"))

    result = finished(events)[a]
    assert result.status == Status.CELL_STATUS_INTERRUPTED
    assert "restarted" in result.error.message
    assert text_outputs(after, after[-2].cell_id) == ["2"]


@pytest.mark.parametrize(
    ("code", "how"),
    [
        ("import os\nos._exit(1)", "exited with code 1"),
        ("import os\nos.kill(os.getpid(), 9)", "signal 9"),
    ],
    ids=["os._exit", "SIGKILL"],
)
async def test_a_dying_kernel_is_reported_and_the_next_run_gets_a_fresh_one(
    stack: Stack, code: str, how: str
) -> None:
    nb, a = await stack.notebook(code)

    events = await stack.run(nb, a)
    after = await stack.run(nb, await stack.add(nb, "'alive'"))

    result = finished(events)[a]
    assert result.status == Status.CELL_STATUS_ERROR
    assert result.error.type == "KernelDied"
    assert how in result.error.message
    assert text_outputs(after, after[-2].cell_id) == ["'alive'"]


@pytest.mark.parametrize(
    "kernel_settings",
    [with_kernels(memory_limit_bytes=2 * 1024**3)],
    indirect=True,
    ids=["2GiB-limit"],
)
async def test_allocating_past_the_memory_limit_fails_the_cell_not_the_service(
    stack: Stack,
) -> None:
    nb, a = await stack.notebook("block = bytearray(8 * 1024 ** 3)")

    events = await stack.run(nb, a)
    after = await stack.run(nb, await stack.add(nb, "'still here'"))

    result = finished(events)[a]
    assert result.status == Status.CELL_STATUS_ERROR
    assert result.error.type in {"MemoryError", "KernelDied"}
    assert text_outputs(after, after[-2].cell_id) == ["'still here'"]


async def test_a_flood_of_output_is_capped_with_a_notice(stack: Stack) -> None:
    nb, a = await stack.notebook("for i in range(10_000_000):\n    print(i)")
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    events = await asyncio.wait_for(stack.run(nb, a), timeout=120)
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    printed = stdout_of(events, a)
    assert len(printed) < 300 * 1024
    assert "output truncated" in printed
    assert finished(events)[a].output_truncated
    assert finished(events)[a].status == Status.CELL_STATUS_SUCCESS
    # ~70 MB were printed; this process (the service) kept within a few MB.
    assert peak_after - peak_before < 50 * 1024  # ru_maxrss is in KiB


async def test_another_notebook_keeps_answering_while_one_is_stuck(
    stack: Stack,
) -> None:
    stuck, loop = await stack.notebook("while True:\n    pass")
    other, quick = await stack.notebook("'quick'")
    run = asyncio.create_task(stack.run(stuck, loop))
    await _wait_busy(stack, stuck)

    answers = [await stack.run(other, quick) for _ in range(3)]
    await _interrupt_when_running(stack, stuck)
    await asyncio.wait_for(run, timeout=10)

    assert all(text_outputs(events, quick) == ["'quick'"] for events in answers)


@pytest.mark.parametrize(
    "kernel_settings", [with_kernels(cell_timeout_s=0.5)], indirect=True, ids=["0.5s"]
)
async def test_cell_timeout_interrupts_the_cell(stack: Stack) -> None:
    nb, a = await stack.notebook("import time\ntime.sleep(30)")

    events = await asyncio.wait_for(stack.run(nb, a), timeout=10)

    assert finished(events)[a].status == Status.CELL_STATUS_INTERRUPTED
