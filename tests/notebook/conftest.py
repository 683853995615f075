"""Fixtures for the notebook service: a real server on port 0, per-user stubs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

import grpc
import pytest

from reflow.notebook.v1 import notebook_pb2_grpc
from services.notebook.manager import NotebookManager
from services.notebook.server import build_server
from services.notebook.store.memory import MemoryStore
from services.shared.auth import InternalTokens

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

# The async stub classes exist only for type checkers (@type_check_only).
Stub: TypeAlias = "notebook_pb2_grpc.NotebookServiceAsyncStub"
InternalStub: TypeAlias = "notebook_pb2_grpc.NotebookInternalServiceAsyncStub"
Metadata = tuple[tuple[str, str], ...]
SECRET = "notebook-tests-internal-secret-0123456789"


@dataclass
class NotebookServer:
    """A running notebook service and what tests need to talk to it."""

    port: int
    manager: NotebookManager
    tokens: InternalTokens

    def metadata(self, user: str) -> Metadata:
        return (("authorization", f"Bearer {self.tokens.mint(user)}"),)


@pytest.fixture
async def notebook_server() -> AsyncIterator[NotebookServer]:
    tokens = InternalTokens(SECRET)
    manager = NotebookManager(MemoryStore())
    server, port = build_server(manager, "127.0.0.1:0", tokens, max_code_bytes=4096)
    await server.start()
    yield NotebookServer(port, manager, tokens)
    await server.stop(None)


@pytest.fixture
async def channel(notebook_server: NotebookServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{notebook_server.port}") as chan:
        yield chan


def notebook_stub(channel: grpc.aio.Channel) -> Stub:
    """The public service's stub, typed for an asyncio channel."""
    return notebook_pb2_grpc.NotebookServiceStub(channel)


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Stub:
    return notebook_stub(channel)


@pytest.fixture
def internal_stub(channel: grpc.aio.Channel) -> InternalStub:
    return notebook_pb2_grpc.NotebookInternalServiceStub(channel)


@pytest.fixture
def alice(notebook_server: NotebookServer) -> Metadata:
    return notebook_server.metadata("alice")


@pytest.fixture
def bob(notebook_server: NotebookServer) -> Metadata:
    return notebook_server.metadata("bob")
