"""The notebook service over real gRPC: every RPC, validation, ownership."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from reflow.notebook.v1 import notebook_pb2
from services.notebook.changes import Snapshot
from services.notebook.manager import NotebookManager
from services.notebook.models import CellType
from services.notebook.store.memory import MemoryStore
from services.shared.fanout import EventHub
from services.shared.grpc_client import service_error_from

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, Awaitable

if TYPE_CHECKING:
    from tests.notebook.conftest import InternalStub, Metadata, Stub

pb = notebook_pb2


async def rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


def bad_fields(error: grpc.aio.AioRpcError) -> set[str]:
    domain = service_error_from(error)
    return {v.field for v in getattr(domain, "field_violations", [])}


async def new_notebook(stub: Stub, who: Metadata, name: str = "nb") -> pb.Notebook:
    reply = await stub.CreateNotebook(pb.CreateNotebookRequest(name=name), metadata=who)
    return reply.notebook


async def add_cell(
    stub: Stub,
    who: Metadata,
    notebook_id: str,
    code: str,
    **fields: Any,
) -> pb.CreateCellResponse:
    request = pb.CreateCellRequest(notebook_id=notebook_id, code=code, **fields)
    return await stub.CreateCell(request, metadata=who)


async def next_events(
    stream: AsyncIterable[pb.WatchNotebookResponse], count: int
) -> list[pb.WatchNotebookResponse]:
    events = []
    async for event in stream:
        events.append(event)
        if len(events) == count:
            break
    return events


# -- notebooks -----------------------------------------------------------------


async def test_create_notebook_starts_at_revision_one(
    stub: Stub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice, "Sales")

    assert (notebook.name, notebook.owner, notebook.revision) == ("Sales", "alice", 1)
    assert notebook.id
    assert notebook.create_time.seconds > 0


async def test_create_notebook_without_name_is_untitled(
    stub: Stub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice, "")

    assert notebook.name == "Untitled"


async def test_demo_template_has_linked_python_sql_and_plot_cells(
    stub: Stub, alice: Metadata
) -> None:
    reply = await stub.CreateNotebook(
        pb.CreateNotebookRequest(template=pb.NOTEBOOK_TEMPLATE_DEMO), metadata=alice
    )

    cells = reply.notebook.cells
    types = [cell.type for cell in cells]
    assert pb.CELL_TYPE_PYTHON in types
    assert pb.CELL_TYPE_SQL in types
    sql = next(cell for cell in cells if cell.type == pb.CELL_TYPE_SQL)
    assert list(sql.reads) == ["sales"]
    assert list(sql.writes) == ["monthly"]
    assert any("monthly" in cell.reads and "plt" in cell.writes for cell in cells)
    assert not any(cell.HasField("analysis_error") for cell in cells)


async def test_get_notebook_returns_cells_with_analysis(
    stub: Stub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    await add_cell(stub, alice, notebook.id, "x = 1")
    await add_cell(stub, alice, notebook.id, "y = x + 1")

    reply = await stub.GetNotebook(
        pb.GetNotebookRequest(notebook_id=notebook.id), metadata=alice
    )

    cells = reply.notebook.cells
    assert [list(c.writes) for c in cells] == [["x"], ["y"]]
    assert [list(c.reads) for c in cells] == [[], ["x"]]
    assert all(c.status == pb.CELL_STATUS_STALE for c in cells)
    assert reply.notebook.revision == 3


async def test_list_notebooks_pages_through_only_the_callers(
    stub: Stub, alice: Metadata, bob: Metadata
) -> None:
    for number in range(7):
        await new_notebook(stub, alice, f"a{number}")
    await new_notebook(stub, bob, "b")
    seen: list[str] = []
    token = ""

    for _ in range(3):
        reply = await stub.ListNotebooks(
            pb.ListNotebooksRequest(page_size=3, page_token=token), metadata=alice
        )
        seen.extend(n.name for n in reply.notebooks)
        token = reply.next_page_token

    assert token == ""
    assert seen == [f"a{number}" for number in reversed(range(7))]


async def test_rename_notebook(stub: Stub, alice: Metadata) -> None:
    notebook = await new_notebook(stub, alice)

    reply = await stub.RenameNotebook(
        pb.RenameNotebookRequest(notebook_id=notebook.id, name="Renamed"),
        metadata=alice,
    )

    assert (reply.notebook.name, reply.notebook.revision) == ("Renamed", 2)


async def test_database_password_is_never_echoed(stub: Stub, alice: Metadata) -> None:
    notebook = await new_notebook(stub, alice)
    url = "postgresql://alice:hunter2@db:5432/sales"

    reply = await stub.SetDatabaseConnection(
        pb.SetDatabaseConnectionRequest(notebook_id=notebook.id, database_url=url),
        metadata=alice,
    )
    got = await stub.GetNotebook(
        pb.GetNotebookRequest(notebook_id=notebook.id), metadata=alice
    )

    masked = "postgresql://alice:***@db:5432/sales"
    assert reply.notebook.database_url == got.notebook.database_url == masked


async def test_clear_database_connection(stub: Stub, alice: Metadata) -> None:
    notebook = await new_notebook(stub, alice)
    await stub.SetDatabaseConnection(
        pb.SetDatabaseConnectionRequest(
            notebook_id=notebook.id, database_url="sqlite:///x.db"
        ),
        metadata=alice,
    )

    reply = await stub.ClearDatabaseConnection(
        pb.ClearDatabaseConnectionRequest(notebook_id=notebook.id), metadata=alice
    )

    assert reply.notebook.database_url == ""


async def test_delete_notebook_then_get_is_not_found(
    stub: Stub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)

    await stub.DeleteNotebook(
        pb.DeleteNotebookRequest(notebook_id=notebook.id), metadata=alice
    )
    error = await rpc_error(
        stub.GetNotebook(pb.GetNotebookRequest(notebook_id=notebook.id), metadata=alice)
    )

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert notebook.id in (error.details() or "")


# -- cells ---------------------------------------------------------------------


async def test_create_cell_at_an_index(stub: Stub, alice: Metadata) -> None:
    notebook = await new_notebook(stub, alice)
    first = await add_cell(stub, alice, notebook.id, "a = 1")
    second = await add_cell(stub, alice, notebook.id, "b = 2", index=0)

    got = await stub.GetNotebook(
        pb.GetNotebookRequest(notebook_id=notebook.id), metadata=alice
    )

    assert [c.id for c in got.notebook.cells] == [second.cell.id, first.cell.id]
    assert second.revision == 3


async def test_sql_cell_reads_placeholders_and_gets_a_default_result_name(
    stub: Stub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)

    reply = await add_cell(
        stub,
        alice,
        notebook.id,
        "SELECT * FROM t WHERE x > {limit}",
        type=pb.CELL_TYPE_SQL,
    )

    assert list(reply.cell.reads) == ["limit", "t"]
    assert list(reply.cell.writes) == [reply.cell.result_name] == ["df_1"]


async def test_update_cell_reanalyses_and_marks_stale(
    stub: Stub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    created = await add_cell(stub, alice, notebook.id, "x = 1")

    reply = await stub.UpdateCell(
        pb.UpdateCellRequest(
            notebook_id=notebook.id, cell_id=created.cell.id, code="z = y * 2"
        ),
        metadata=alice,
    )

    assert list(reply.cell.reads) == ["y"]
    assert list(reply.cell.writes) == ["z"]
    assert reply.cell.status == pb.CELL_STATUS_STALE
    assert reply.revision == created.revision + 1


async def test_multiple_definition_is_reported_on_every_writer(
    stub: Stub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    first = await add_cell(stub, alice, notebook.id, "x = 1")

    second = await add_cell(stub, alice, notebook.id, "x += 1")

    kind = pb.AnalysisError.KIND_MULTIPLE_DEFINITION
    assert second.cell.analysis_error.kind == kind
    assert [c.id for c in second.affected_cells] == [first.cell.id]
    assert second.affected_cells[0].analysis_error.kind == kind


async def test_syntax_error_is_an_analysis_error_with_its_line(
    stub: Stub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)

    reply = await add_cell(stub, alice, notebook.id, "x = 1\ny = (")

    assert reply.cell.analysis_error.kind == pb.AnalysisError.KIND_SYNTAX
    assert reply.cell.analysis_error.line == 2


async def test_move_cell(stub: Stub, alice: Metadata) -> None:
    notebook = await new_notebook(stub, alice)
    ids = [
        (await add_cell(stub, alice, notebook.id, f"v{i} = {i}")).cell.id
        for i in range(3)
    ]

    reply = await stub.MoveCell(
        pb.MoveCellRequest(notebook_id=notebook.id, cell_id=ids[2], index=0),
        metadata=alice,
    )

    assert list(reply.cell_ids) == [ids[2], ids[0], ids[1]]


async def test_delete_cell_resolves_a_multiple_definition(
    stub: Stub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    first = await add_cell(stub, alice, notebook.id, "x = 1")
    second = await add_cell(stub, alice, notebook.id, "x = 2")

    reply = await stub.DeleteCell(
        pb.DeleteCellRequest(notebook_id=notebook.id, cell_id=second.cell.id),
        metadata=alice,
    )

    assert [c.id for c in reply.affected_cells] == [first.cell.id]
    assert not reply.affected_cells[0].HasField("analysis_error")


async def test_missing_cell_is_not_found(stub: Stub, alice: Metadata) -> None:
    notebook = await new_notebook(stub, alice)

    error = await rpc_error(
        stub.UpdateCell(
            pb.UpdateCellRequest(notebook_id=notebook.id, cell_id="nope", code=""),
            metadata=alice,
        )
    )

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "nope" in (error.details() or "")


async def test_move_outside_the_notebook_is_invalid(
    stub: Stub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    cell = (await add_cell(stub, alice, notebook.id, "x = 1")).cell

    error = await rpc_error(
        stub.MoveCell(
            pb.MoveCellRequest(notebook_id=notebook.id, cell_id=cell.id, index=5),
            metadata=alice,
        )
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(error) == {"index"}


# -- revisions -----------------------------------------------------------------


async def test_stale_expected_revision_is_aborted_with_the_current_one(
    stub: Stub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    await add_cell(stub, alice, notebook.id, "x = 1")

    error = await rpc_error(
        add_cell(stub, alice, notebook.id, "y = 2", expected_revision=1)
    )

    assert error.code() == grpc.StatusCode.ABORTED
    domain = service_error_from(error)
    assert domain is not None
    assert domain.metadata["current_revision"] == "2"


async def test_matching_expected_revision_is_applied(
    stub: Stub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)

    reply = await add_cell(stub, alice, notebook.id, "x = 1", expected_revision=1)

    assert reply.revision == 2


# -- ownership and identity ----------------------------------------------------


async def test_another_users_notebook_is_not_found(
    stub: Stub, alice: Metadata, bob: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    calls: list[Awaitable[Any]] = [
        stub.GetNotebook(pb.GetNotebookRequest(notebook_id=notebook.id), metadata=bob),
        stub.RenameNotebook(
            pb.RenameNotebookRequest(notebook_id=notebook.id, name="mine"), metadata=bob
        ),
        add_cell(stub, bob, notebook.id, "x = 1"),
        stub.DeleteNotebook(
            pb.DeleteNotebookRequest(notebook_id=notebook.id), metadata=bob
        ),
    ]

    codes = [(await rpc_error(call)).code() for call in calls]

    assert codes == [grpc.StatusCode.NOT_FOUND] * 4


async def test_foreign_and_missing_notebooks_look_alike(
    stub: Stub, alice: Metadata, bob: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)

    foreign = await rpc_error(
        stub.GetNotebook(pb.GetNotebookRequest(notebook_id=notebook.id), metadata=bob)
    )
    missing = await rpc_error(
        stub.GetNotebook(pb.GetNotebookRequest(notebook_id="0" * 32), metadata=bob)
    )

    assert foreign.code() == missing.code() == grpc.StatusCode.NOT_FOUND
    assert foreign.details() == (missing.details() or "").replace("0" * 32, notebook.id)


async def test_no_token_is_unauthenticated(stub: Stub) -> None:
    error = await rpc_error(stub.ListNotebooks(pb.ListNotebooksRequest()))

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


# -- validation ----------------------------------------------------------------

LONG = "n" * 201
UNKNOWN_ENUM: Any = 42  # a value the enum does not define, as an old client might

VALIDATION_CASES = [
    ("CreateNotebook", pb.CreateNotebookRequest(name=LONG), {"name"}),
    ("CreateNotebook", pb.CreateNotebookRequest(template=UNKNOWN_ENUM), {"template"}),
    ("ListNotebooks", pb.ListNotebooksRequest(page_size=-1), {"page_size"}),
    ("ListNotebooks", pb.ListNotebooksRequest(page_token="garbage!"), {"page_token"}),
    ("GetNotebook", pb.GetNotebookRequest(), {"notebook_id"}),
    ("GetNotebook", pb.GetNotebookRequest(notebook_id="../etc"), {"notebook_id"}),
    ("RenameNotebook", pb.RenameNotebookRequest(notebook_id="n1", name=" "), {"name"}),
    (
        "RenameNotebook",
        pb.RenameNotebookRequest(notebook_id="n1", name="a\nb", expected_revision=-1),
        {"name", "expected_revision"},
    ),
    (
        "SetDatabaseConnection",
        pb.SetDatabaseConnectionRequest(notebook_id="n1", database_url="not a url"),
        {"database_url"},
    ),
    (
        "SetDatabaseConnection",
        pb.SetDatabaseConnectionRequest(notebook_id="n1"),
        {"database_url"},
    ),
    (
        "SetDatabaseConnection",
        pb.SetDatabaseConnectionRequest(
            notebook_id="n1", database_url="sqlite:///a\x00b.db"
        ),
        {"database_url"},
    ),
    (
        "SetDatabaseConnection",
        pb.SetDatabaseConnectionRequest(
            notebook_id="n1", database_url="postgresql://h/db\r\noptions=-c"
        ),
        {"database_url"},
    ),
    ("ClearDatabaseConnection", pb.ClearDatabaseConnectionRequest(), {"notebook_id"}),
    ("DeleteNotebook", pb.DeleteNotebookRequest(notebook_id="x" * 65), {"notebook_id"}),
    ("CreateCell", pb.CreateCellRequest(notebook_id="n1", code="x" * 4097), {"code"}),
    ("CreateCell", pb.CreateCellRequest(notebook_id="n1", type=UNKNOWN_ENUM), {"type"}),
    (
        "CreateCell",
        pb.CreateCellRequest(notebook_id="n1", type=pb.CELL_TYPE_SQL, result_name="1x"),
        {"result_name"},
    ),
    ("CreateCell", pb.CreateCellRequest(notebook_id="n1", index=-1), {"index"}),
    ("UpdateCell", pb.UpdateCellRequest(notebook_id="n1"), {"cell_id"}),
    (
        "UpdateCell",
        pb.UpdateCellRequest(notebook_id="n1", cell_id="c1", result_name="class"),
        {"result_name"},
    ),
    (
        "MoveCell",
        pb.MoveCellRequest(notebook_id="n1", cell_id="c1", index=-2),
        {"index"},
    ),
    ("DeleteCell", pb.DeleteCellRequest(cell_id="c1"), {"notebook_id"}),
]


@pytest.mark.parametrize(
    ("method", "request_message", "fields"),
    VALIDATION_CASES,
    ids=[f"{case[0]}-{sorted(case[2])}" for case in VALIDATION_CASES],
)
async def test_invalid_requests_name_the_field(
    stub: Stub, alice: Metadata, method: str, request_message: Any, fields: set[str]
) -> None:
    error = await rpc_error(getattr(stub, method)(request_message, metadata=alice))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(error) == fields
    assert all(field in (error.details() or "") for field in fields)


async def test_invalid_watch_names_the_field(stub: Stub, alice: Metadata) -> None:
    stream = stub.WatchNotebook(
        pb.WatchNotebookRequest(since_revision=-1), metadata=alice
    )

    error = await rpc_error(next_events(stream, 1))

    assert bad_fields(error) == {"notebook_id", "since_revision"}


async def test_page_size_above_the_maximum_is_capped(
    stub: Stub, alice: Metadata
) -> None:
    await new_notebook(stub, alice)

    reply = await stub.ListNotebooks(
        pb.ListNotebooksRequest(page_size=10_000), metadata=alice
    )

    assert len(reply.notebooks) == 1


# -- watching ------------------------------------------------------------------


async def test_watch_starts_with_a_snapshot_then_sees_another_clients_edits(
    stub: Stub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    stream = stub.WatchNotebook(
        pb.WatchNotebookRequest(notebook_id=notebook.id), metadata=alice
    )
    first = await next_events(stream, 1)

    created = await add_cell(stub, alice, notebook.id, "x = 1")
    await stub.RenameNotebook(
        pb.RenameNotebookRequest(notebook_id=notebook.id, name="new"), metadata=alice
    )
    events = await next_events(stream, 2)
    stream.cancel()

    assert first[0].WhichOneof("event") == "snapshot"
    assert first[0].revision == 1
    assert events[0].cell_created.cell.id == created.cell.id
    assert events[0].revision == 2
    assert events[1].notebook_changed.notebook.name == "new"
    assert events[1].revision == 3


async def test_watch_since_a_revision_replays_what_was_missed(
    stub: Stub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    await add_cell(stub, alice, notebook.id, "x = 1")
    await add_cell(stub, alice, notebook.id, "y = 2")
    stream = stub.WatchNotebook(
        pb.WatchNotebookRequest(notebook_id=notebook.id, since_revision=2),
        metadata=alice,
    )

    events = await next_events(stream, 1)
    stream.cancel()

    assert events[0].WhichOneof("event") == "cell_created"
    assert events[0].revision == 3
    assert list(events[0].cell_created.cell.writes) == ["y"]


async def test_several_watchers_each_receive_every_event(
    stub: Stub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    request = pb.WatchNotebookRequest(notebook_id=notebook.id)
    streams = [stub.WatchNotebook(request, metadata=alice) for _ in range(3)]
    for stream in streams:
        await next_events(stream, 1)

    await add_cell(stub, alice, notebook.id, "x = 1")
    received = [await next_events(stream, 1) for stream in streams]
    for stream in streams:
        stream.cancel()

    assert [events[0].revision for events in received] == [2, 2, 2]


async def test_watch_of_a_foreign_notebook_is_not_found(
    stub: Stub, alice: Metadata, bob: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    stream = stub.WatchNotebook(
        pb.WatchNotebookRequest(notebook_id=notebook.id), metadata=bob
    )

    error = await rpc_error(next_events(stream, 1))

    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_watch_ends_when_the_notebook_is_deleted(
    stub: Stub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    stream = stub.WatchNotebook(
        pb.WatchNotebookRequest(notebook_id=notebook.id), metadata=alice
    )
    await next_events(stream, 1)

    await stub.DeleteNotebook(
        pb.DeleteNotebookRequest(notebook_id=notebook.id), metadata=alice
    )
    rest = [event async for event in stream]

    assert [event.WhichOneof("event") for event in rest] == ["notebook_deleted"]


async def test_a_slow_watcher_gets_a_fresh_snapshot_instead_of_unbounded_memory() -> (
    None
):
    manager = NotebookManager(MemoryStore(), EventHub(queue_size=5))
    notebook = (await manager.create_notebook("alice", "nb", demo=False)).notebook
    watch = manager.watch("alice", notebook.id, 0)
    assert (await anext(watch)).revision == 1

    # Nobody reads the watcher while far more changes than its queue holds
    # are published.
    for number in range(20):
        await manager.create_cell(
            "alice", notebook.id, CellType.PYTHON, f"v{number} = 1", "", None, 0
        )
    item = await asyncio.wait_for(anext(watch), timeout=5)
    await watch.aclose()

    assert isinstance(item, Snapshot)
    assert item.revision == 21
    assert len(item.cells) == 20


# -- results (internal service) ------------------------------------------------


async def test_recorded_result_is_persisted_and_broadcast(
    stub: Stub, internal_stub: InternalStub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    cell = (await add_cell(stub, alice, notebook.id, "print('hi')")).cell
    stream = stub.WatchNotebook(
        pb.WatchNotebookRequest(notebook_id=notebook.id), metadata=alice
    )
    await next_events(stream, 1)
    result = pb.CellResult(
        status=pb.CELL_STATUS_SUCCESS,
        stdout="hi\n",
        execution_count=1,
        outputs=[pb.Output(mime_type="text/plain", text="42")],
    )

    reply = await internal_stub.RecordCellResult(
        pb.RecordCellResultRequest(
            notebook_id=notebook.id, cell_id=cell.id, result=result
        ),
        metadata=alice,
    )
    event = (await next_events(stream, 1))[0]
    stream.cancel()
    got = await stub.GetNotebook(
        pb.GetNotebookRequest(notebook_id=notebook.id), metadata=alice
    )

    assert event.cell_result_recorded.result == result
    assert event.revision == reply.revision == 3
    assert got.notebook.cells[0].result == result
    assert got.notebook.cells[0].status == pb.CELL_STATUS_SUCCESS


async def test_record_result_needs_a_final_status(
    stub: Stub, internal_stub: InternalStub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    cell = (await add_cell(stub, alice, notebook.id, "x = 1")).cell

    error = await rpc_error(
        internal_stub.RecordCellResult(
            pb.RecordCellResultRequest(
                notebook_id=notebook.id,
                cell_id=cell.id,
                result=pb.CellResult(status=pb.CELL_STATUS_RUNNING),
            ),
            metadata=alice,
        )
    )

    assert bad_fields(error) == {"result.status"}


async def test_results_recorded_together_share_one_revision_and_each_is_broadcast(
    stub: Stub, internal_stub: InternalStub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    first = (await add_cell(stub, alice, notebook.id, "a = 1")).cell
    second = (await add_cell(stub, alice, notebook.id, "b = a")).cell
    gone = (await add_cell(stub, alice, notebook.id, "c = 3")).cell
    await stub.DeleteCell(
        pb.DeleteCellRequest(notebook_id=notebook.id, cell_id=gone.id), metadata=alice
    )
    stream = stub.WatchNotebook(
        pb.WatchNotebookRequest(notebook_id=notebook.id), metadata=alice
    )
    await next_events(stream, 1)
    ok = pb.CellResult(status=pb.CELL_STATUS_SUCCESS, execution_count=1)
    failed = pb.CellResult(status=pb.CELL_STATUS_ERROR, execution_count=2)

    reply = await internal_stub.RecordCellResults(
        pb.RecordCellResultsRequest(
            notebook_id=notebook.id,
            results=[
                pb.RecordedCellResult(cell_id=first.id, result=ok),
                pb.RecordedCellResult(cell_id=gone.id, result=ok),
                pb.RecordedCellResult(cell_id=second.id, result=failed),
            ],
        ),
        metadata=alice,
    )
    events = await next_events(stream, 2)
    stream.cancel()
    got = await stub.GetNotebook(
        pb.GetNotebookRequest(notebook_id=notebook.id), metadata=alice
    )

    assert list(reply.recorded_cell_ids) == [first.id, second.id]
    assert [(e.cell_result_recorded.cell_id, e.revision) for e in events] == [
        (first.id, reply.revision),
        (second.id, reply.revision),
    ]
    assert got.notebook.revision == reply.revision
    assert [c.status for c in got.notebook.cells] == [
        pb.CELL_STATUS_SUCCESS,
        pb.CELL_STATUS_ERROR,
    ]


async def test_recording_results_together_checks_every_entry(
    stub: Stub, internal_stub: InternalStub, alice: Metadata, bob: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    cell = (await add_cell(stub, alice, notebook.id, "x = 1")).cell
    ok = pb.CellResult(status=pb.CELL_STATUS_SUCCESS)

    empty = await rpc_error(
        internal_stub.RecordCellResults(
            pb.RecordCellResultsRequest(notebook_id=notebook.id), metadata=alice
        )
    )
    bad = await rpc_error(
        internal_stub.RecordCellResults(
            pb.RecordCellResultsRequest(
                notebook_id=notebook.id,
                results=[
                    pb.RecordedCellResult(cell_id=cell.id, result=ok),
                    pb.RecordedCellResult(cell_id=cell.id, result=ok),
                    pb.RecordedCellResult(cell_id="../x", result=ok),
                    pb.RecordedCellResult(
                        cell_id=cell.id,
                        result=pb.CellResult(status=pb.CELL_STATUS_RUNNING),
                    ),
                ],
            ),
            metadata=alice,
        )
    )
    foreign = await rpc_error(
        internal_stub.RecordCellResults(
            pb.RecordCellResultsRequest(
                notebook_id=notebook.id,
                results=[pb.RecordedCellResult(cell_id=cell.id, result=ok)],
            ),
            metadata=bob,
        )
    )

    assert bad_fields(empty) == {"results"}
    assert bad_fields(bad) == {
        "results[1].cell_id",
        "results[2].cell_id",
        "results[3].cell_id",
        "results[3].result.status",
    }
    assert foreign.code() == grpc.StatusCode.NOT_FOUND


async def test_internal_database_connection_is_unmasked(
    stub: Stub, internal_stub: InternalStub, alice: Metadata, bob: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    url = "postgresql://alice:hunter2@db/sales"
    await stub.SetDatabaseConnection(
        pb.SetDatabaseConnectionRequest(notebook_id=notebook.id, database_url=url),
        metadata=alice,
    )

    reply = await internal_stub.GetDatabaseConnection(
        pb.GetDatabaseConnectionRequest(notebook_id=notebook.id), metadata=alice
    )
    foreign = await rpc_error(
        internal_stub.GetDatabaseConnection(
            pb.GetDatabaseConnectionRequest(notebook_id=notebook.id), metadata=bob
        )
    )

    assert reply.database_url == url
    assert foreign.code() == grpc.StatusCode.NOT_FOUND


# -- per-cell conflicts (expected_code) -------------------------------------------


async def test_a_save_over_someone_elses_newer_edit_of_the_cell_is_aborted(
    stub: Stub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    cell = (await add_cell(stub, alice, notebook.id, "x = 1")).cell
    await stub.UpdateCell(
        pb.UpdateCellRequest(notebook_id=notebook.id, cell_id=cell.id, code="x = 2"),
        metadata=alice,
    )

    error = await rpc_error(
        stub.UpdateCell(
            pb.UpdateCellRequest(
                notebook_id=notebook.id,
                cell_id=cell.id,
                code="x = 3",
                expected_code="x = 1",
            ),
            metadata=alice,
        )
    )

    assert error.code() == grpc.StatusCode.ABORTED
    domain = service_error_from(error)
    assert domain is not None
    assert domain.reason == "CELL_CHANGED"


async def test_a_save_based_on_the_cells_current_code_is_applied_whatever_else_changed(
    stub: Stub, alice: Metadata
) -> None:
    notebook = await new_notebook(stub, alice)
    cell = (await add_cell(stub, alice, notebook.id, "x = 1")).cell
    await add_cell(stub, alice, notebook.id, "y = 1")

    reply = await stub.UpdateCell(
        pb.UpdateCellRequest(
            notebook_id=notebook.id,
            cell_id=cell.id,
            code="x = 3",
            expected_code="x = 1",
        ),
        metadata=alice,
    )

    assert reply.cell.code == "x = 3"
