"""Fixtures for the gateway: the real notebook service, a fake execution service,
the real gateway (gRPC and HTTP on port 0) in front of them, and tokens."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import pytest
from websockets.asyncio.client import connect

from reflow.execution.v1 import execution_pb2_grpc
from reflow.gateway.v1 import gateway_pb2_grpc
from reflow.notebook.v1 import notebook_pb2, notebook_pb2_grpc
from services.gateway.app import create_app
from services.gateway.auth import Identity, open_identity
from services.gateway.clients import Downstreams
from services.gateway.config import IdentitySettings, WebSocketSettings
from services.gateway.server import (
    bind_http_socket,
    bound_port,
    build_grpc_server,
    build_http_server,
)
from services.notebook.manager import NotebookManager
from services.notebook.server import build_server as build_notebook
from services.notebook.store.memory import MemoryStore
from services.shared.auth import InternalTokens
from services.shared.grpc_server import create_server
from tests.gateway.fakes import FakeExecution, WatchedHub

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable
    from pathlib import Path

    from starlette.types import ASGIApp
    from websockets.asyncio.client import ClientConnection

SECRET = "gateway-tests-internal-secret-0123456789"
Metadata: TypeAlias = tuple[tuple[str, str], ...]
NotebookStub: TypeAlias = "notebook_pb2_grpc.NotebookServiceAsyncStub"
ExecutionStub: TypeAlias = "execution_pb2_grpc.ExecutionServiceAsyncStub"
GatewayStub: TypeAlias = "gateway_pb2_grpc.GatewayServiceAsyncStub"


@dataclass
class Backends:
    """The services behind the gateway, running on port 0."""

    notebook_port: int
    manager: NotebookManager
    hub: WatchedHub
    execution_port: int
    execution: FakeExecution
    tokens: InternalTokens


@pytest.fixture
async def backends() -> AsyncIterator[Backends]:
    tokens = InternalTokens(SECRET)
    hub = WatchedHub()
    manager = NotebookManager(MemoryStore(), hub=hub)
    notebook_server, notebook_port = build_notebook(manager, "127.0.0.1:0", tokens)
    execution = FakeExecution()
    execution_server, execution_port = create_server(
        [
            lambda s: execution_pb2_grpc.add_ExecutionServiceServicer_to_server(
                execution, s
            )
        ],
        "127.0.0.1:0",
        ["reflow.execution.v1.ExecutionService"],
        token_verifier=tokens,
    )
    await notebook_server.start()
    await execution_server.start()
    yield Backends(notebook_port, manager, hub, execution_port, execution, tokens)
    await execution_server.stop(None)
    await notebook_server.stop(None)


@pytest.fixture(scope="session")
def dev_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data directory (one dev key) for the session: RSA keys are slow to make."""
    return tmp_path_factory.mktemp("gateway")


@pytest.fixture
async def identity(dev_data_dir: Path) -> AsyncIterator[Identity]:
    """The dev issuer; tests may override this fixture."""
    settings = IdentitySettings.from_env({"GATEWAY_DATA_DIR": str(dev_data_dir)})
    async with open_identity(settings) as opened:
        yield opened


@pytest.fixture
def ws_settings(request: pytest.FixtureRequest) -> WebSocketSettings:
    """Default WebSocket limits, or what a test passes with indirect parametrize."""
    settings: WebSocketSettings = getattr(request, "param", WebSocketSettings())
    return settings


@dataclass
class Gateway:
    """A running gateway and the clients tests use on it."""

    grpc_port: int
    http_port: int
    identity: Identity
    channel: grpc.aio.Channel
    backends: Backends

    @property
    def notebooks(self) -> NotebookStub:
        return notebook_pb2_grpc.NotebookServiceStub(self.channel)

    @property
    def execution(self) -> ExecutionStub:
        return execution_pb2_grpc.ExecutionServiceStub(self.channel)

    @property
    def gateway(self) -> GatewayStub:
        return gateway_pb2_grpc.GatewayServiceStub(self.channel)

    def token(self, user: str = "alice", ttl_s: float = 300) -> str:
        assert self.identity.dev_issuer is not None
        return self.identity.dev_issuer.mint(user, ttl_s)

    def metadata(self, user: str = "alice") -> Metadata:
        return (("authorization", f"Bearer {self.token(user)}"),)

    async def notebook(self, user: str = "alice") -> notebook_pb2.Notebook:
        reply = await self.notebooks.CreateNotebook(
            notebook_pb2.CreateNotebookRequest(name="nb"), metadata=self.metadata(user)
        )
        return reply.notebook

    def ws_url(self, notebook_id: str) -> str:
        return f"ws://127.0.0.1:{self.http_port}/ws/notebooks/{notebook_id}"

    @contextlib.asynccontextmanager
    async def socket(
        self, notebook_id: str, user: str = "alice"
    ) -> AsyncIterator[ClientConnection]:
        """An authenticated socket on the notebook."""
        async with connect(self.ws_url(notebook_id)) as socket:
            await socket.send(json.dumps({"type": "auth", "token": self.token(user)}))
            yield socket


@contextlib.asynccontextmanager
async def serving_http(app: ASGIApp) -> AsyncIterator[int]:
    """``app`` under uvicorn on a free loopback port, for the block's duration."""
    server = build_http_server(app)  # type: ignore[arg-type]
    sock = bind_http_socket(0, "127.0.0.1")
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield bound_port(sock)
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def gateway(
    backends: Backends, identity: Identity, ws_settings: WebSocketSettings
) -> AsyncIterator[Gateway]:
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{backends.notebook_port}") as notebook,
        grpc.aio.insecure_channel(f"127.0.0.1:{backends.execution_port}") as execution,
    ):
        downstreams = Downstreams(notebook, execution)
        server, port = build_grpc_server(
            identity, backends.tokens, downstreams, "127.0.0.1:0"
        )
        await server.start()
        app = create_app(identity, downstreams, backends.tokens, ws_settings)
        try:
            async with (
                serving_http(app) as http_port,
                grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
            ):
                yield Gateway(port, http_port, identity, channel, backends)
        finally:
            await server.stop(None)


async def rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """The error ``call`` fails with."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def receive(socket: ClientConnection) -> dict[str, Any]:
    """The next message from the gateway, within 5 s."""
    message: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), 5))
    return message


async def receive_until(socket: ClientConnection, kind: str) -> dict[str, Any]:
    """The next message of type ``kind``, skipping others, within 5 s."""
    async with asyncio.timeout(5):
        while True:
            message = await receive(socket)
            if message["type"] == kind:
                return message
