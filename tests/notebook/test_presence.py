"""Presence over real gRPC: who has a notebook open, as WatchNotebook streams
that ask for it see it, through joins and leaves."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest

from reflow.notebook.v1 import notebook_pb2 as pb
from tests.notebook.test_service import add_cell, new_notebook, next_events

if TYPE_CHECKING:
    from collections.abc import AsyncIterable

    from tests.notebook.conftest import Metadata, Stub


def watch(
    stub: Stub, who: Metadata, notebook_id: str, presence: bool = True
) -> grpc.aio.UnaryStreamCall[pb.WatchNotebookRequest, pb.WatchNotebookResponse]:
    request = pb.WatchNotebookRequest(notebook_id=notebook_id, presence=presence)
    return stub.WatchNotebook(request, metadata=who)


async def next_presence(
    stream: AsyncIterable[pb.WatchNotebookResponse],
) -> pb.WatchNotebookResponse:
    async for event in stream:
        if event.HasField("presence"):
            return event
    raise AssertionError("the stream ended without a presence event")


async def test_a_viewer_sees_itself_after_the_snapshot(
    stub: Stub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    stream = watch(stub, alice, notebook.id)

    snapshot, presence = await next_events(stream, 2)
    stream.cancel()

    assert snapshot.HasField("snapshot")
    assert presence.revision == snapshot.revision
    assert [v.user for v in presence.presence.viewers] == ["alice"]
    assert presence.presence.viewers[0].viewer_id == presence.presence.you
    assert presence.presence.viewers[0].since.seconds > 0


async def test_viewers_see_each_other_join_and_leave(
    stub: Stub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    first = watch(stub, alice, notebook.id)
    alone = await next_presence(first)

    second = watch(stub, alice, notebook.id)
    together = await next_presence(first)
    seen_by_second = await next_presence(second)
    second.cancel()
    left = await next_presence(first)
    first.cancel()

    assert len(alone.presence.viewers) == 1
    assert len(together.presence.viewers) == 2
    assert together.presence.you == alone.presence.you
    assert seen_by_second.presence.you != alone.presence.you
    assert {v.viewer_id for v in seen_by_second.presence.viewers} == {
        v.viewer_id for v in together.presence.viewers
    }
    assert [v.viewer_id for v in left.presence.viewers] == [alone.presence.you]


async def test_changes_still_flow_to_a_stream_with_presence(
    stub: Stub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    stream = watch(stub, alice, notebook.id)
    await next_presence(stream)

    created = await add_cell(stub, alice, notebook.id, "x = 1")
    (event,) = await next_events(stream, 1)
    stream.cancel()

    assert event.cell_created.cell.id == created.cell.id


async def test_a_stream_without_presence_is_not_counted_and_hears_none(
    stub: Stub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    follower = watch(stub, alice, notebook.id, presence=False)
    await next_events(follower, 1)

    viewer = watch(stub, alice, notebook.id)
    presence = await next_presence(viewer)
    await add_cell(stub, alice, notebook.id, "x = 1")
    (followed,) = await next_events(follower, 1)
    viewer.cancel()
    follower.cancel()

    assert len(presence.presence.viewers) == 1
    assert followed.HasField("cell_created")


async def test_another_user_takes_no_seat_in_a_notebook_not_theirs(
    stub: Stub, alice: Metadata, bob: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    owner = watch(stub, alice, notebook.id)
    await next_presence(owner)

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await next_events(watch(stub, bob, notebook.id), 1)
    second = watch(stub, alice, notebook.id)
    company = await next_presence(owner)
    owner.cancel()
    second.cancel()

    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert [v.user for v in company.presence.viewers] == ["alice", "alice"]
