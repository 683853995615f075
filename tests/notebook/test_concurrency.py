"""Many clients editing one notebook at once never lose an acknowledged edit."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc

from reflow.notebook.v1 import notebook_pb2
from tests.notebook.conftest import notebook_stub

if TYPE_CHECKING:
    from tests.notebook.conftest import NotebookServer, Stub

CLIENTS = 20
EDITS = 50


async def _client(
    port: int, metadata: tuple[tuple[str, str], ...], notebook_id: str, number: int
) -> list[str]:
    acknowledged = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = notebook_stub(channel)
        for edit in range(EDITS):
            reply = await stub.CreateCell(
                notebook_pb2.CreateCellRequest(
                    notebook_id=notebook_id, code=f"c{number}_{edit} = {edit}"
                ),
                metadata=metadata,
            )
            acknowledged.append(reply.cell.id)
    return acknowledged


async def test_twenty_clients_fifty_edits_each_all_land(
    notebook_server: NotebookServer, stub: Stub
) -> None:
    alice = notebook_server.metadata("alice")
    created = await stub.CreateNotebook(
        notebook_pb2.CreateNotebookRequest(name="busy"), metadata=alice
    )
    start = created.notebook.revision

    results = await asyncio.gather(
        *(
            _client(notebook_server.port, alice, created.notebook.id, n)
            for n in range(CLIENTS)
        )
    )
    final = await stub.GetNotebook(
        notebook_pb2.GetNotebookRequest(notebook_id=created.notebook.id),
        metadata=alice,
    )

    acknowledged = {cell_id for result in results for cell_id in result}
    assert len(acknowledged) == CLIENTS * EDITS
    assert {cell.id for cell in final.notebook.cells} == acknowledged
    assert final.notebook.revision == start + CLIENTS * EDITS
