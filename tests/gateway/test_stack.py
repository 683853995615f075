"""The gateway in front of the real notebook and execution services (real kernels).

The other gateway tests use a fake execution service for determinism; these
check the same paths against the real one: RunCells forwarded as a stream,
and a run started over the WebSocket arriving as execution events.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from websockets.asyncio.client import connect

from reflow.execution.v1 import execution_pb2, execution_pb2_grpc
from reflow.notebook.v1 import notebook_pb2, notebook_pb2_grpc
from services.execution.clients import NotebookClient
from services.execution.config import KernelSettings
from services.execution.kernel.launcher import KernelLauncher
from services.execution.recorder import ResultRecorder
from services.execution.server import build_server as build_execution
from services.execution.sessions import SessionManager
from services.gateway.app import create_app
from services.gateway.clients import Downstreams
from services.gateway.config import WebSocketSettings
from services.gateway.server import build_grpc_server
from services.notebook.manager import NotebookManager
from services.notebook.server import build_server as build_notebook
from services.notebook.store.memory import MemoryStore
from services.shared.auth import InternalTokens
from tests.gateway.conftest import SECRET, receive, serving_http

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from websockets.asyncio.client import ClientConnection

    from services.gateway.auth import Identity

KERNELS = KernelSettings(
    use_zygote=False, interrupt_grace_s=1.0, shutdown_timeout_s=2.0
)


class Stack:
    """Notebook + execution + gateway, and a user's token for the gateway."""

    def __init__(self, identity: Identity, grpc_port: int, http_port: int) -> None:
        self.identity = identity
        self.grpc_port = grpc_port
        self.http_port = http_port

    def token(self) -> str:
        assert self.identity.dev_issuer is not None
        return self.identity.dev_issuer.mint("alice", 300)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token()}"),)


@pytest.fixture
async def stack(identity: Identity) -> AsyncIterator[Stack]:
    tokens = InternalTokens(SECRET)
    notebook_server, notebook_port = build_notebook(
        NotebookManager(MemoryStore()), "127.0.0.1:0", tokens
    )
    await notebook_server.start()
    launcher = KernelLauncher(use_zygote=False)
    await launcher.start()
    notebooks = grpc.aio.insecure_channel(f"127.0.0.1:{notebook_port}")
    recorder = ResultRecorder(NotebookClient(notebooks), tokens)
    sessions = SessionManager(launcher, KERNELS, recorder)
    execution_server, execution_port = build_execution(
        sessions, NotebookClient(notebooks), "127.0.0.1:0", tokens
    )
    await execution_server.start()
    execution = grpc.aio.insecure_channel(f"127.0.0.1:{execution_port}")
    downstreams = Downstreams(notebooks, execution)
    gateway, gateway_port = build_grpc_server(
        identity, tokens, downstreams, "127.0.0.1:0"
    )
    await gateway.start()
    app = create_app(identity, downstreams, tokens, WebSocketSettings())
    try:
        async with serving_http(app) as http_port:
            yield Stack(identity, gateway_port, http_port)
    finally:
        await gateway.stop(None)
        await execution_server.stop(None)
        await sessions.close()
        await recorder.close()
        await launcher.close()
        await execution.close()
        await notebooks.close()
        await notebook_server.stop(None)


async def notebook_with_cell(
    channel: grpc.aio.Channel, stack: Stack, code: str
) -> tuple[str, str]:
    stub = notebook_pb2_grpc.NotebookServiceStub(channel)
    created = await stub.CreateNotebook(
        notebook_pb2.CreateNotebookRequest(name="e2e"), metadata=stack.metadata()
    )
    cell = await stub.CreateCell(
        notebook_pb2.CreateCellRequest(notebook_id=created.notebook.id, code=code),
        metadata=stack.metadata(),
    )
    return created.notebook.id, cell.cell.id


async def test_run_cells_streams_through_the_gateway(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.grpc_port}") as channel:
        notebook_id, cell_id = await notebook_with_cell(channel, stack, "print(6 * 7)")
        run = execution_pb2_grpc.ExecutionServiceStub(channel).RunCells(
            execution_pb2.RunCellsRequest(notebook_id=notebook_id, cell_ids=[cell_id]),
            metadata=stack.metadata(),
            timeout=60,
        )
        events = [reply.event async for reply in run]

    printed = "".join(e.stream_chunk.text for e in events if e.HasField("stream_chunk"))
    assert printed == "42\n"
    assert events[-1].run_finished.status == notebook_pb2.CELL_STATUS_SUCCESS


async def until_run_done(socket: ClientConnection) -> list[dict[str, Any]]:
    """Messages up to both the run's reply and its RunFinished event (60 s)."""
    messages: list[dict[str, Any]] = []
    replied = finished = False
    async with asyncio.timeout(60):
        while not (replied and finished):
            message = json.loads(await socket.recv())
            messages.append(message)
            replied = replied or message["type"] == "reply"
            finished = finished or "runFinished" in message.get("event", {})
    return messages


async def test_run_over_the_websocket_arrives_as_execution_events(stack: Stack) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.grpc_port}") as channel:
        notebook_id, cell_id = await notebook_with_cell(channel, stack, "print('hi')")
    url = f"ws://127.0.0.1:{stack.http_port}/ws/notebooks/{notebook_id}"

    async with connect(url) as socket:
        await socket.send(json.dumps({"type": "auth", "token": stack.token()}))
        await receive(socket)  # the snapshot
        run = {"type": "run_cells", "id": "r1", "cellIds": [cell_id]}
        await socket.send(json.dumps(run))
        messages = await until_run_done(socket)

    reply = next(m for m in messages if m["type"] == "reply")
    chunks = [m["event"] for m in messages if "streamChunk" in m.get("event", {})]
    assert reply["result"]["status"] == "CELL_STATUS_SUCCESS"
    assert "".join(c["streamChunk"]["text"] for c in chunks) == "hi\n"
