"""Runs from the execution service's followed copy of a notebook (RunCells
with ``min_revision``): the same results as reading the notebook, never an
older version of it, and never another user's."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc
import pytest

from reflow.execution.v1 import execution_pb2
from reflow.notebook.v1 import notebook_pb2
from services.execution.followed import FollowedNotebook
from tests.execution.conftest import collect, finished, stdout_of

if TYPE_CHECKING:
    from tests.execution.conftest import Stack

SUCCESS = notebook_pb2.CELL_STATUS_SUCCESS


async def run_seen(
    stack: Stack, notebook_id: str, cell_id: str, revision: int, user: str = "alice"
) -> list[execution_pb2.ExecutionEvent]:
    stream = stack.execution.RunCells(
        execution_pb2.RunCellsRequest(
            notebook_id=notebook_id, cell_ids=[cell_id], min_revision=revision
        ),
        metadata=stack.metadata(user),
        timeout=60,
    )
    return await collect(stream)


async def update(stack: Stack, notebook_id: str, cell_id: str, code: str) -> int:
    reply = await stack.notebooks.UpdateCell(
        notebook_pb2.UpdateCellRequest(
            notebook_id=notebook_id, cell_id=cell_id, code=code
        ),
        metadata=stack.metadata(),
    )
    return reply.revision


async def test_every_run_sees_the_edit_its_caller_made_just_before(
    stack: Stack,
) -> None:
    notebook_id, cell = await stack.notebook("print('first')")
    await stack.run(notebook_id, cell)  # a kernel, so the notebook is followed
    session = stack.sessions.live("alice", notebook_id)
    assert session is not None
    for n in range(8):
        revision = await update(stack, notebook_id, cell, f"print({n})")
        events = await run_seen(stack, notebook_id, cell, revision)
        assert stdout_of(events, cell) == f"{n}\n"
    # The copy followed every edit (and recorded result): runs came from it.
    assert session.followed.revision >= revision


async def test_cells_added_moved_and_deleted_reach_the_copy(stack: Stack) -> None:
    notebook_id, a = await stack.notebook("x = 1")
    await stack.run(notebook_id, a)
    b = await stack.add(notebook_id, "print(x + 1)")
    moved = await stack.notebooks.MoveCell(
        notebook_pb2.MoveCellRequest(notebook_id=notebook_id, cell_id=b, index=0),
        metadata=stack.metadata(),
    )
    events = await run_seen(stack, notebook_id, b, moved.revision)
    assert stdout_of(events, b) == "2\n"
    deleted = await stack.notebooks.DeleteCell(
        notebook_pb2.DeleteCellRequest(notebook_id=notebook_id, cell_id=a),
        metadata=stack.metadata(),
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await run_seen(stack, notebook_id, a, deleted.revision)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert a in (caught.value.details() or "")


async def test_another_user_naming_a_revision_still_finds_nothing(
    stack: Stack,
) -> None:
    notebook_id, cell = await stack.notebook("secret = 42")
    await stack.run(notebook_id, cell)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await run_seen(stack, notebook_id, cell, 1, user="mallory")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_revision_the_copy_never_reaches_reads_the_notebook(
    stack: Stack,
) -> None:
    notebook_id, cell = await stack.notebook("print('ok')")
    await stack.run(notebook_id, cell)
    events = await run_seen(stack, notebook_id, cell, 10**9)
    assert finished(events)[cell].status == SUCCESS
    assert stdout_of(events, cell) == "ok\n"


async def test_a_negative_revision_is_invalid(stack: Stack) -> None:
    notebook_id, cell = await stack.notebook("x = 1")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await run_seen(stack, notebook_id, cell, -1)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "min_revision" in (caught.value.details() or "")


# -- the copy on its own ------------------------------------------------------


def change(revision: int, **event: object) -> notebook_pb2.WatchNotebookResponse:
    return notebook_pb2.WatchNotebookResponse(revision=revision, **event)  # type: ignore[arg-type]


def snapshot(
    revision: int, *codes: str, url: str = ""
) -> notebook_pb2.WatchNotebookResponse:
    cells = [notebook_pb2.Cell(id=f"c{i}", code=code) for i, code in enumerate(codes)]
    return change(
        revision,
        snapshot=notebook_pb2.Notebook(
            id="n", revision=revision, cells=cells, database_url=url
        ),
    )


async def no_url() -> str:
    raise AssertionError("no database URL was asked for")


async def test_the_copy_applies_the_stream_in_order() -> None:
    copy = FollowedNotebook()
    copy.apply(snapshot(3, "a = 1", "b = 2"))
    copy.apply(
        change(
            4,
            cell_created=notebook_pb2.CellCreated(
                cell=notebook_pb2.Cell(id="c2", code="c = 3"), index=1
            ),
        )
    )
    copy.apply(
        change(
            5,
            cell_updated=notebook_pb2.CellUpdated(
                cell=notebook_pb2.Cell(id="c0", code="a = 10")
            ),
        )
    )
    copy.apply(change(6, cell_moved=notebook_pb2.CellMoved(cell_id="c0", index=2)))
    copy.apply(change(7, cell_deleted=notebook_pb2.CellDeleted(cell_id="c1")))
    copy.apply(
        change(8, cell_result_recorded=notebook_pb2.CellResultRecorded(cell_id="c2"))
    )
    seen = await copy.at_least(8, 0.01, no_url)
    assert seen is not None
    assert [(c.id, c.code) for c in seen.notebook.cells] == [
        ("c2", "c = 3"),
        ("c0", "a = 10"),
    ]
    assert seen.notebook.revision == 8
    assert seen.notebook.cell_count == 2


async def test_the_copy_waits_for_a_revision_on_its_way() -> None:
    copy = FollowedNotebook()
    copy.apply(snapshot(3, "a = 1"))
    waiting = asyncio.create_task(copy.at_least(4, 5.0, no_url))
    await asyncio.sleep(0)
    copy.apply(
        change(
            4,
            cell_updated=notebook_pb2.CellUpdated(
                cell=notebook_pb2.Cell(id="c0", code="a = 2")
            ),
        )
    )
    seen = await waiting
    assert seen is not None
    assert seen.notebook.cells[0].code == "a = 2"


async def test_no_copy_after_the_stream_broke_or_before_a_snapshot() -> None:
    copy = FollowedNotebook()
    copy.apply(change(4, cell_deleted=notebook_pb2.CellDeleted(cell_id="c0")))
    assert await copy.at_least(1, 0.01, no_url) is None
    copy.apply(snapshot(5, "a = 1"))
    copy.drop()
    assert await copy.at_least(1, 0.01, no_url) is None
    copy.apply(snapshot(6, "a = 1"))
    copy.apply(
        change(7, notebook_deleted=notebook_pb2.NotebookDeleted(notebook_id="n"))
    )
    assert await copy.at_least(1, 0.01, no_url) is None


async def test_the_database_url_is_fetched_once_per_connection() -> None:
    asked: list[str] = []

    async def url() -> str:
        asked.append("asked")
        return f"postgresql://u:pw{len(asked)}@db/test"

    copy = FollowedNotebook()
    copy.apply(snapshot(1, "a = 1", url="postgresql://u:***@db/test"))
    first = await copy.at_least(1, 0.01, url)
    again = await copy.at_least(1, 0.01, url)
    assert first is not None
    assert again is not None
    assert first.database_url == again.database_url == "postgresql://u:pw1@db/test"
    # A new password looks the same masked: any change of the notebook's
    # own fields fetches the URL again.
    copy.apply(
        change(
            2,
            notebook_changed=notebook_pb2.NotebookChanged(
                notebook=notebook_pb2.Notebook(
                    id="n", database_url="postgresql://u:***@db/test"
                )
            ),
        )
    )
    changed = await copy.at_least(2, 0.01, url)
    assert changed is not None
    assert changed.database_url == "postgresql://u:pw2@db/test"
    assert len(asked) == 2
