"""Fault tests: processes killed at the worst moment, through the gateway.

* The notebook service SIGKILLed while clients edit concurrently: every edit
  the service acknowledged is there after the restart, and every file on
  disk parses.
* The execution service SIGKILLed mid-run: the client gets UNAVAILABLE
  (naming the service, not its address), the next run after a restart
  works, and no cell is left RUNNING.
* A kernel SIGKILLed while idle and while running: the next run works.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import TYPE_CHECKING, Any, Final

import grpc
import pytest

from reflow.execution.v1 import execution_pb2, execution_pb2_grpc
from reflow.notebook.v1 import notebook_pb2, notebook_pb2_grpc
from services.shared.grpc_client import open_channel
from tests.stack.service_processes import running_services
from tests.stack.stack_process import wait_until_gone

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from tests.stack.service_processes import Services

CLIENTS: Final = 4
EDITS_PER_CLIENT: Final = 100
TIMEOUT_S: Final = 60.0
Metadata = tuple[tuple[str, str], ...]


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    with running_services(tmp_path_factory.mktemp("faults")) as running:
        yield running


@pytest.fixture(scope="module")
def metadata(services: Services) -> Metadata:
    return (("authorization", f"Bearer {services.token('faulty')}"),)


@pytest.fixture
async def channel(services: Services) -> AsyncIterator[grpc.aio.Channel]:
    async with open_channel(services.gateway.address) as opened:
        yield opened


async def new_notebook(
    notebooks: notebook_pb2_grpc.NotebookServiceAsyncStub,
    metadata: Metadata,
    *codes: str,
) -> tuple[str, list[str]]:
    created = await notebooks.CreateNotebook(
        notebook_pb2.CreateNotebookRequest(name="faults"), metadata=metadata
    )
    notebook_id = created.notebook.id
    cell_ids = []
    for code in codes:
        cell = await notebooks.CreateCell(
            notebook_pb2.CreateCellRequest(notebook_id=notebook_id, code=code),
            metadata=metadata,
        )
        cell_ids.append(cell.cell.id)
    return notebook_id, cell_ids


async def edit_until_done(
    notebooks: notebook_pb2_grpc.NotebookServiceAsyncStub,
    metadata: Metadata,
    notebook_id: str,
    cell_id: str,
    acknowledged: dict[str, str],
    refusals: list[grpc.StatusCode],
    through: asyncio.Event,
) -> None:
    """Edit one cell EDITS_PER_CLIENT times, retrying what the outage refused."""
    edit = 0
    while edit < EDITS_PER_CLIENT:
        code = f"x_{cell_id} = {edit}"
        try:
            await notebooks.UpdateCell(
                notebook_pb2.UpdateCellRequest(
                    notebook_id=notebook_id, cell_id=cell_id, code=code
                ),
                metadata=metadata,
                timeout=5,
            )
        except grpc.aio.AioRpcError as error:
            refusals.append(error.code())
            await asyncio.sleep(0.05)  # the service is restarting: back off
            continue
        acknowledged[cell_id] = code
        edit += 1
        if len(acknowledged) == CLIENTS:
            through.set()


def unparsable_files(directory: Path) -> list[Path]:
    bad = []
    for path in directory.rglob("*"):
        if path.is_file() and path.suffix == ".json":
            try:
                json.loads(path.read_text())
            except ValueError:
                bad.append(path)
    return bad


async def test_sigkill_of_the_notebook_service_loses_no_acknowledged_edit(
    services: Services, channel: grpc.aio.Channel, metadata: Metadata
) -> None:
    notebooks = notebook_pb2_grpc.NotebookServiceStub(channel)
    notebook_id, cell_ids = await new_notebook(
        notebooks, metadata, *["x = 0"] * CLIENTS
    )
    acknowledged: dict[str, str] = {}
    refusals: list[grpc.StatusCode] = []
    every_client_through = asyncio.Event()
    editing = [
        asyncio.create_task(
            edit_until_done(
                notebooks,
                metadata,
                notebook_id,
                cell,
                acknowledged,
                refusals,
                every_client_through,
            )
        )
        for cell in cell_ids
    ]
    await asyncio.wait_for(every_client_through.wait(), TIMEOUT_S)

    await asyncio.to_thread(services.notebook.kill)
    await asyncio.to_thread(services.notebook.start)
    await asyncio.wait_for(asyncio.gather(*editing), TIMEOUT_S)
    stored = await notebooks.GetNotebook(
        notebook_pb2.GetNotebookRequest(notebook_id=notebook_id), metadata=metadata
    )

    assert {cell.id: cell.code for cell in stored.notebook.cells} == acknowledged
    assert unparsable_files(services.data_dir / "notebooks") == []
    assert set(refusals) <= {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }


async def started_run(
    execution: execution_pb2_grpc.ExecutionServiceAsyncStub,
    metadata: Metadata,
    notebook_id: str,
) -> grpc.aio.UnaryStreamCall[
    execution_pb2.RunCellsRequest, execution_pb2.RunCellsResponse
]:
    """A RunCells call whose cell has started running."""
    call = execution.RunCells(
        execution_pb2.RunCellsRequest(notebook_id=notebook_id), metadata=metadata
    )
    async for response in call:
        if response.event.HasField("cell_started"):
            return call
    raise AssertionError("the run ended before its cell started")


async def run_status(
    execution: execution_pb2_grpc.ExecutionServiceAsyncStub,
    metadata: Metadata,
    notebook_id: str,
) -> int:
    """Run every cell of the notebook; the run's final status."""
    status = notebook_pb2.CELL_STATUS_UNSPECIFIED
    async for response in execution.RunCells(
        execution_pb2.RunCellsRequest(notebook_id=notebook_id),
        metadata=metadata,
        timeout=TIMEOUT_S,
    ):
        if response.event.HasField("run_finished"):
            status = response.event.run_finished.status
    return status


async def drain(call: grpc.aio.UnaryStreamCall[Any, Any]) -> None:
    async for _ in call:
        pass


async def statuses(
    notebooks: notebook_pb2_grpc.NotebookServiceAsyncStub,
    metadata: Metadata,
    notebook_id: str,
) -> list[int]:
    reply = await notebooks.GetNotebook(
        notebook_pb2.GetNotebookRequest(notebook_id=notebook_id), metadata=metadata
    )
    return [cell.status for cell in reply.notebook.cells]


async def test_sigkill_of_the_execution_service_mid_run(
    services: Services, channel: grpc.aio.Channel, metadata: Metadata
) -> None:
    notebooks = notebook_pb2_grpc.NotebookServiceStub(channel)
    execution = execution_pb2_grpc.ExecutionServiceStub(channel)
    notebook_id, [cell_id] = await new_notebook(
        notebooks, metadata, "import time\ntime.sleep(60)"
    )
    call = await started_run(execution, metadata, notebook_id)
    orphan = await kernel_pid(execution, metadata, notebook_id)

    await asyncio.to_thread(services.execution.kill)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await asyncio.wait_for(drain(call), TIMEOUT_S)
    left_over = await asyncio.to_thread(wait_until_gone, [orphan], 10.0)
    await asyncio.to_thread(services.execution.start)
    await notebooks.UpdateCell(
        notebook_pb2.UpdateCellRequest(
            notebook_id=notebook_id, cell_id=cell_id, code="x = 1"
        ),
        metadata=metadata,
    )
    status = await run_status(execution, metadata, notebook_id)

    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error.value.details() == "the execution service is unavailable, try again"
    assert left_over == []
    assert status == notebook_pb2.CELL_STATUS_SUCCESS
    assert notebook_pb2.CELL_STATUS_RUNNING not in await statuses(
        notebooks, metadata, notebook_id
    )


async def kernel_pid(
    execution: execution_pb2_grpc.ExecutionServiceAsyncStub,
    metadata: Metadata,
    notebook_id: str,
) -> int:
    reply = await execution.GetKernel(
        execution_pb2.GetKernelRequest(notebook_id=notebook_id), metadata=metadata
    )
    assert reply.kernel.pid > 0
    return reply.kernel.pid


async def test_a_kernel_killed_while_idle_is_replaced_on_the_next_run(
    channel: grpc.aio.Channel, metadata: Metadata
) -> None:
    notebooks = notebook_pb2_grpc.NotebookServiceStub(channel)
    execution = execution_pb2_grpc.ExecutionServiceStub(channel)
    notebook_id, _ = await new_notebook(notebooks, metadata, "x = 1")
    first = await run_status(execution, metadata, notebook_id)

    os.kill(await kernel_pid(execution, metadata, notebook_id), signal.SIGKILL)
    again = await run_status(execution, metadata, notebook_id)

    assert (first, again) == (
        notebook_pb2.CELL_STATUS_SUCCESS,
        notebook_pb2.CELL_STATUS_SUCCESS,
    )


async def test_a_kernel_killed_while_running_ends_the_run_and_is_replaced(
    channel: grpc.aio.Channel, metadata: Metadata
) -> None:
    notebooks = notebook_pb2_grpc.NotebookServiceStub(channel)
    execution = execution_pb2_grpc.ExecutionServiceStub(channel)
    notebook_id, [cell_id] = await new_notebook(notebooks, metadata, "while True: pass")
    call = await started_run(execution, metadata, notebook_id)

    os.kill(await kernel_pid(execution, metadata, notebook_id), signal.SIGKILL)
    finished = notebook_pb2.CELL_STATUS_UNSPECIFIED
    async for response in call:
        if response.event.HasField("run_finished"):
            finished = response.event.run_finished.status
    await notebooks.UpdateCell(
        notebook_pb2.UpdateCellRequest(
            notebook_id=notebook_id, cell_id=cell_id, code="x = 1"
        ),
        metadata=metadata,
    )
    again = await run_status(execution, metadata, notebook_id)

    assert finished == notebook_pb2.CELL_STATUS_ERROR
    assert again == notebook_pb2.CELL_STATUS_SUCCESS
    assert notebook_pb2.CELL_STATUS_RUNNING not in await statuses(
        notebooks, metadata, notebook_id
    )
