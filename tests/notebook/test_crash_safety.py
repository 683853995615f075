"""A notebook service killed with SIGKILL mid-write loses nothing it acknowledged."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from typing import TYPE_CHECKING

import grpc

from reflow.notebook.v1 import notebook_pb2
from services.notebook.models import NotebookId
from services.notebook.store.local import LocalFileStore
from services.shared.auth import InternalTokens
from tests.notebook.conftest import notebook_stub

if TYPE_CHECKING:
    from pathlib import Path

    from tests.notebook.conftest import Stub

SECRET = "crash-test-internal-secret-0123456789abcdef"
WRITERS = 4


async def _start_service(data_dir: Path) -> tuple[asyncio.subprocess.Process, int]:
    env = {
        **os.environ,
        "NOTEBOOK_PORT": "0",
        "NOTEBOOK_STORE": "local",
        "NOTEBOOK_DATA_DIR": str(data_dir),
        "REFLOW_INTERNAL_SECRET": SECRET,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.notebook",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    while line := await asyncio.wait_for(process.stdout.readline(), timeout=30):
        found = re.search(rb"listening on port (\d+)", line)
        if found:
            return process, int(found.group(1))
    raise AssertionError("the notebook service exited before listening")


async def _write_until_killed(
    stub: Stub,
    metadata: tuple[tuple[str, str], ...],
    acknowledged: dict[str, tuple[int, set[str]]],
) -> None:
    created = await stub.CreateNotebook(
        notebook_pb2.CreateNotebookRequest(name="crash"), metadata=metadata
    )
    notebook_id = created.notebook.id
    cells: set[str] = set()
    acknowledged[notebook_id] = (created.notebook.revision, set())
    try:
        for number in range(100_000):
            reply = await stub.CreateCell(
                notebook_pb2.CreateCellRequest(
                    notebook_id=notebook_id, code=f"v{number} = {number}"
                ),
                metadata=metadata,
            )
            cells.add(reply.cell.id)
            acknowledged[notebook_id] = (reply.revision, set(cells))
    except grpc.aio.AioRpcError:
        return  # the service died under us: what was acknowledged is recorded


async def test_sigkill_while_writing_loses_no_acknowledged_edit(tmp_path: Path) -> None:
    process, port = await _start_service(tmp_path)
    metadata = (("authorization", f"Bearer {InternalTokens(SECRET).mint('alice')}"),)
    acknowledged: dict[str, tuple[int, set[str]]] = {}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = notebook_stub(channel)
        writers = [
            asyncio.create_task(_write_until_killed(stub, metadata, acknowledged))
            for _ in range(WRITERS)
        ]
        await asyncio.sleep(1.5)  # deliberate: let the writers get going
        process.send_signal(signal.SIGKILL)
        await process.wait()
        await asyncio.gather(*writers)

    store = LocalFileStore(tmp_path)
    assert len(acknowledged) == WRITERS
    for notebook_id, (revision, cells) in acknowledged.items():
        notebook = await store.get(NotebookId(notebook_id))
        assert notebook.revision >= revision
        assert cells <= {cell.id for cell in notebook.cells}
        assert sum(revision for revision, _ in acknowledged.values()) > WRITERS
