"""The change stream replicas share: two notebook servers, one store, one Redis.

Each "replica" is a real notebook server on port 0 with a manager of its
own over the same store (as two processes share a DynamoDB table) and a
RedisChangeFeed on the session's redis-server.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import grpc
import pytest
from redis.asyncio import Redis

from reflow.notebook.v1 import notebook_pb2 as pb
from reflow.notebook.v1 import notebook_pb2_grpc
from services.notebook.feed import RedisChangeFeed
from services.notebook.manager import NotebookManager
from services.notebook.models import CellType, NotebookId
from services.notebook.server import build_server
from services.notebook.store.memory import MemoryStore
from services.shared.auth import InternalTokens
from tests.local_redis import serve_redis

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator, Iterator

    from tests.notebook.conftest import Metadata, Stub

SECRET: Final = "notebook-feed-tests-internal-secret-0123"
TIMEOUT_S: Final = 20.0
USER: Final = "ada"


@dataclass
class Replicas:
    """Two replicas' stubs, the shared store, and the caller's metadata."""

    a: Stub
    b: Stub
    store: MemoryStore
    metadata: Metadata


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with serve_redis() as url:
        yield url


@pytest.fixture
async def replicas(redis_url: str) -> AsyncIterator[Replicas]:
    tokens = InternalTokens(SECRET)
    store = MemoryStore()
    # A prefix per test: the module's tests share one redis-server.
    prefix = f"test-{uuid.uuid4().hex}:"
    servers, channels, clients = [], [], []
    for _ in range(2):
        redis = Redis.from_url(redis_url)
        clients.append(redis)
        feed = RedisChangeFeed(redis, poll_s=0.2, prefix=prefix)
        manager = NotebookManager(store, sink=feed)
        server, port = build_server(manager, "127.0.0.1:0", tokens, feed=feed)
        await server.start()
        servers.append(server)
        channels.append(grpc.aio.insecure_channel(f"127.0.0.1:{port}"))
    a, b = (notebook_pb2_grpc.NotebookServiceStub(c) for c in channels)
    metadata = (("authorization", f"Bearer {tokens.mint(USER)}"),)
    yield Replicas(a, b, store, metadata)
    for channel in channels:
        await channel.close()
    for server in servers:
        await server.stop(None)
    for redis in clients:
        await redis.aclose()


async def new_notebook(replicas: Replicas) -> str:
    created = await replicas.a.CreateNotebook(
        pb.CreateNotebookRequest(name="shared"), metadata=replicas.metadata
    )
    return created.notebook.id


async def add_cell(stub: Stub, replicas: Replicas, notebook_id: str, code: str) -> int:
    created = await stub.CreateCell(
        pb.CreateCellRequest(notebook_id=notebook_id, code=code),
        metadata=replicas.metadata,
    )
    return created.revision


async def until_revision(
    stream: AsyncIterable[pb.WatchNotebookResponse], revision: int
) -> list[pb.WatchNotebookResponse]:
    """Events up to and including the first one at ``revision``."""
    events = []
    async for event in stream:
        events.append(event)
        if event.revision >= revision:
            break
    return events


async def drain(
    stream: AsyncIterable[pb.WatchNotebookResponse],
) -> list[pb.WatchNotebookResponse]:
    return [event async for event in stream]


def watch(
    stub: Stub, replicas: Replicas, notebook_id: str, since: int = 0
) -> grpc.aio.UnaryStreamCall[pb.WatchNotebookRequest, pb.WatchNotebookResponse]:
    return stub.WatchNotebook(
        pb.WatchNotebookRequest(notebook_id=notebook_id, since_revision=since),
        metadata=replicas.metadata,
    )


async def test_watcher_sees_every_edit_of_both_replicas_once_in_order(
    replicas: Replicas,
) -> None:
    notebook_id = await new_notebook(replicas)
    stream = watch(replicas.b, replicas, notebook_id)
    (opening,) = await asyncio.wait_for(until_revision(stream, 1), TIMEOUT_S)

    revision = 0
    for index in range(10):
        stub = replicas.a if index % 2 == 0 else replicas.b
        revision = await add_cell(stub, replicas, notebook_id, f"x{index} = {index}")
    events = await asyncio.wait_for(until_revision(stream, revision), TIMEOUT_S)
    stream.cancel()

    assert opening.WhichOneof("event") == "snapshot"
    assert [e.WhichOneof("event") for e in events] == ["cell_created"] * 10
    assert [e.revision for e in events] == list(range(2, 12))
    assert [e.cell_created.cell.code for e in events] == [
        f"x{i} = {i}" for i in range(10)
    ]


async def test_watch_resumes_on_the_other_replica_from_its_revision(
    replicas: Replicas,
) -> None:
    notebook_id = await new_notebook(replicas)
    first = watch(replicas.a, replicas, notebook_id)
    await asyncio.wait_for(until_revision(first, 1), TIMEOUT_S)
    seen = await add_cell(replicas.a, replicas, notebook_id, "x = 1")
    await asyncio.wait_for(until_revision(first, seen), TIMEOUT_S)
    first.cancel()

    for code in ("y = 2", "z = 3"):
        last = await add_cell(replicas.a, replicas, notebook_id, code)
    resumed = watch(replicas.b, replicas, notebook_id, since=seen)
    events = await asyncio.wait_for(until_revision(resumed, last), TIMEOUT_S)
    resumed.cancel()

    assert [e.WhichOneof("event") for e in events] == ["cell_created"] * 2
    assert [e.revision for e in events] == [seen + 1, seen + 2]


async def test_a_write_missing_from_the_stream_is_made_up_by_a_snapshot(
    replicas: Replicas,
) -> None:
    notebook_id = await new_notebook(replicas)
    stream = watch(replicas.b, replicas, notebook_id)
    await asyncio.wait_for(until_revision(stream, 1), TIMEOUT_S)
    # A replica that stored the write and died before appending its events.
    lost = NotebookManager(replicas.store)

    change = await lost.create_cell(
        USER, NotebookId(notebook_id), CellType.PYTHON, "x = 1", "", None, 0
    )
    (event,) = await asyncio.wait_for(
        until_revision(stream, change.revision), TIMEOUT_S
    )
    stream.cancel()

    assert event.WhichOneof("event") == "snapshot"
    assert event.revision == change.revision
    assert [c.code for c in event.snapshot.cells] == ["x = 1"]


async def test_deleting_on_one_replica_ends_the_watch_on_the_other(
    replicas: Replicas,
) -> None:
    notebook_id = await new_notebook(replicas)
    stream = watch(replicas.b, replicas, notebook_id)
    await asyncio.wait_for(until_revision(stream, 1), TIMEOUT_S)

    await replicas.a.DeleteNotebook(
        pb.DeleteNotebookRequest(notebook_id=notebook_id), metadata=replicas.metadata
    )
    events = await asyncio.wait_for(drain(stream), TIMEOUT_S)

    assert [e.WhichOneof("event") for e in events] == ["notebook_deleted"]
