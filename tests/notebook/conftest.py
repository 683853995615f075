"""Fixtures for the notebook service: a real server on port 0, per-user stubs,
and a local DynamoDB (a moto server) with a fresh table per test."""

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
from tests.notebook.local_dynamodb import FAKE_AWS_ENV, fresh_table, serve_moto

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from services.notebook.store import DynamoDBSettings

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


@pytest.fixture(scope="session")
def dynamodb_endpoint() -> Iterator[str]:
    """A moto server for the whole session (started by the first test that
    needs one); the SDK's credential variables point at fakes while it runs."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in FAKE_AWS_ENV.items():
            patch.setenv(name, value)
        with serve_moto() as endpoint:
            yield endpoint


@pytest.fixture
async def dynamodb_table(dynamodb_endpoint: str) -> AsyncIterator[DynamoDBSettings]:
    """Settings naming a fresh table on the session's moto server."""
    async with fresh_table(dynamodb_endpoint) as settings:
        yield settings
