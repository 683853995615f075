"""The notebook service's gRPC edge: validate, delegate to the manager, convert."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, TypedDict

from reflow.notebook.v1 import notebook_pb2, notebook_pb2_grpc
from services.notebook import convert
from services.notebook.changes import Change, Snapshot
from services.notebook.exporting import export_notebook
from services.notebook.files import check_room
from services.notebook.files.paths import check_path
from services.notebook.importing import import_file
from services.notebook.models import CellId, CellStatus, CellType, NotebookId
from services.notebook.presence import PresenceBoard, PresenceChanged, with_presence
from services.shared.auth import current_user
from services.shared.validation import Violations, page_size

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import grpc

    from services.notebook.feed import RedisChangeFeed
    from services.notebook.files import FileStore
    from services.notebook.graphs import CellView
    from services.notebook.manager import CellChange, NotebookManager

    Context = grpc.aio.ServicerContext[object, object]

# Statuses a finished run can leave a cell in.
_RESULT_STATUSES = {
    CellStatus.SUCCESS,
    CellStatus.ERROR,
    CellStatus.BLOCKED,
    CellStatus.INTERRUPTED,
    CellStatus.DISABLED,
    # A lazy run marks a cell out of date without running it.
    CellStatus.STALE,
}


_RESULT_STATUS_RULE = "must be SUCCESS, ERROR, BLOCKED, INTERRUPTED, DISABLED or STALE"


def _notebook_id(violations: Violations, value: str) -> NotebookId:
    violations.identifier("notebook_id", value)
    return NotebookId(value)


def _cell_id(violations: Violations, value: str) -> CellId:
    violations.identifier("cell_id", value)
    return CellId(value)


def _cells(views: tuple[CellView, ...]) -> list[notebook_pb2.Cell]:
    return [convert.cell_to_proto(view) for view in views]


class NotebookServicer(notebook_pb2_grpc.NotebookServiceServicer):
    """Public notebook RPCs, each acting for the caller of the internal token."""

    def __init__(
        self,
        manager: NotebookManager,
        max_code_bytes: int,
        files: FileStore,
        feed: RedisChangeFeed | None = None,
    ) -> None:
        self._manager = manager
        self._max_code_bytes = max_code_bytes
        self._files = files
        self._presence = PresenceBoard()
        # Replicas share one change stream; a single process needs none.
        self._feed = feed
        # A notebook file holds many cells and their stored outputs.
        self._max_import_bytes = 8 * max_code_bytes

    async def CreateNotebook(
        self, request: notebook_pb2.CreateNotebookRequest, context: Context
    ) -> notebook_pb2.CreateNotebookResponse:
        check = Violations()
        check.name("name", request.name, required=False)
        if request.template not in notebook_pb2.NotebookTemplate.values():
            check.add("template", "is not a known template")
        check.raise_if_any()
        demo = request.template == notebook_pb2.NOTEBOOK_TEMPLATE_DEMO
        snapshot = await self._manager.create_notebook(
            current_user(), request.name, demo
        )
        return notebook_pb2.CreateNotebookResponse(
            notebook=convert.snapshot_to_proto(snapshot)
        )

    async def ImportNotebook(
        self, request: notebook_pb2.ImportNotebookRequest, context: Context
    ) -> notebook_pb2.ImportNotebookResponse:
        check = Violations()
        check.name("name", request.name, required=False)
        file_format = convert.import_format_from_proto(request.format)
        if file_format is None:
            check.add("format", "must be IPYNB, PY_PERCENT or MARIMO")
        if not request.content.strip():
            check.add("content", "is required")
        check.code("content", request.content, self._max_import_bytes)
        for index, file in enumerate(request.files):
            check_path(check, f"files[{index}].path", file.path)
        check.raise_if_any()
        assert file_format is not None
        cells = import_file(file_format, request.content)
        for index, cell in enumerate(cells):
            check.code(f"content (cell {index + 1})", cell.code, self._max_code_bytes)
        check.raise_if_any()
        owner = current_user()
        data = [(file.path, file.content) for file in request.files]
        await check_room(self._files, owner, data)
        snapshot, notes = await self._manager.import_notebook(
            owner, request.name, cells
        )
        await self._store_imported_files(owner, snapshot.notebook.id, data)
        return notebook_pb2.ImportNotebookResponse(
            notebook=convert.snapshot_to_proto(snapshot),
            notes=[notebook_pb2.ImportNote(cell_id=c, message=m) for c, m in notes],
        )

    async def ExportNotebook(
        self, request: notebook_pb2.ExportNotebookRequest, context: Context
    ) -> notebook_pb2.ExportNotebookResponse:
        check = Violations()
        notebook_id = _notebook_id(check, request.notebook_id)
        file_format = convert.export_format_from_proto(request.format)
        if file_format is None:
            check.add("format", "must be IPYNB, PYTHON, MARIMO or HTML")
        check.raise_if_any()
        assert file_format is not None
        snapshot, order = await self._manager.dependency_order(
            current_user(), notebook_id
        )
        exported = export_notebook(snapshot, order, file_format)
        return notebook_pb2.ExportNotebookResponse(
            content=exported.content,
            media_type=exported.media_type,
            file_name=exported.file_name,
        )

    async def PutFile(
        self, request: notebook_pb2.PutFileRequest, context: Context
    ) -> notebook_pb2.PutFileResponse:
        check = Violations()
        notebook_id = _notebook_id(check, request.notebook_id)
        check_path(check, "path", request.path)
        check.raise_if_any()
        owner = await self._owned(notebook_id)
        stored = await self._files.put(
            owner, notebook_id, request.path, request.content
        )
        return notebook_pb2.PutFileResponse(file=convert.file_to_proto(stored))

    async def ListFiles(
        self, request: notebook_pb2.ListFilesRequest, context: Context
    ) -> notebook_pb2.ListFilesResponse:
        check = Violations()
        notebook_id = _notebook_id(check, request.notebook_id)
        check.raise_if_any()
        owner = await self._owned(notebook_id)
        files = await self._files.listing(owner, notebook_id)
        return notebook_pb2.ListFilesResponse(
            files=[convert.file_to_proto(f) for f in files],
            used_bytes=await self._files.used_bytes(owner),
            quota_bytes=self._files.limits.max_user_bytes,
            max_file_bytes=self._files.limits.max_file_bytes,
        )

    async def GetFile(
        self, request: notebook_pb2.GetFileRequest, context: Context
    ) -> notebook_pb2.GetFileResponse:
        check = Violations()
        notebook_id = _notebook_id(check, request.notebook_id)
        check_path(check, "path", request.path)
        check.raise_if_any()
        owner = await self._owned(notebook_id)
        stored, content = await self._files.get(owner, notebook_id, request.path)
        return notebook_pb2.GetFileResponse(
            file=convert.file_to_proto(stored), content=content
        )

    async def DeleteFile(
        self, request: notebook_pb2.DeleteFileRequest, context: Context
    ) -> notebook_pb2.DeleteFileResponse:
        check = Violations()
        notebook_id = _notebook_id(check, request.notebook_id)
        check_path(check, "path", request.path)
        check.raise_if_any()
        owner = await self._owned(notebook_id)
        await self._files.delete(owner, notebook_id, request.path)
        return notebook_pb2.DeleteFileResponse()

    async def _store_imported_files(
        self, owner: str, notebook_id: NotebookId, files: list[tuple[str, bytes]]
    ) -> None:
        """Store an import's data files; if one is refused after all (another
        upload took the room meanwhile), the new notebook goes too."""
        try:
            for path, content in files:
                await self._files.put(owner, notebook_id, path, content)
        except BaseException:
            await self._files.delete_all(owner, notebook_id)
            await self._manager.delete_notebook(owner, notebook_id, 0)
            raise

    async def _owned(self, notebook_id: NotebookId) -> str:
        """The caller, once the notebook is known to be theirs (else NotFound)."""
        owner = current_user()
        await self._manager.get_notebook(owner, notebook_id)
        return owner

    async def ListNotebooks(
        self, request: notebook_pb2.ListNotebooksRequest, context: Context
    ) -> notebook_pb2.ListNotebooksResponse:
        check = Violations()
        size = page_size(request.page_size, check)
        check.raise_if_any()
        summaries, token = await self._manager.list_notebooks(
            current_user(), size, request.page_token
        )
        return notebook_pb2.ListNotebooksResponse(
            notebooks=[convert.summary_to_proto(s) for s in summaries],
            next_page_token=token,
        )

    async def GetNotebook(
        self, request: notebook_pb2.GetNotebookRequest, context: Context
    ) -> notebook_pb2.GetNotebookResponse:
        check = Violations()
        notebook_id = _notebook_id(check, request.notebook_id)
        check.raise_if_any()
        owner = current_user()
        snapshot = await self._manager.get_notebook(owner, notebook_id)
        reply = notebook_pb2.GetNotebookResponse(
            notebook=convert.snapshot_to_proto(snapshot)
        )
        if request.include_files:
            files = await self._files.listing(owner, notebook_id)
            reply.files.extend(convert.file_to_proto(f) for f in files)
            reply.max_file_bytes = self._files.limits.max_file_bytes
        return reply

    async def RenameNotebook(
        self, request: notebook_pb2.RenameNotebookRequest, context: Context
    ) -> notebook_pb2.RenameNotebookResponse:
        check = Violations()
        notebook_id = _notebook_id(check, request.notebook_id)
        check.name("name", request.name, required=True)
        check.not_negative("expected_revision", request.expected_revision)
        check.raise_if_any()
        notebook = await self._manager.rename(
            current_user(), notebook_id, request.name, request.expected_revision
        )
        return notebook_pb2.RenameNotebookResponse(
            notebook=convert.summary_to_proto(notebook.summary())
        )

    async def SetDatabaseConnection(
        self, request: notebook_pb2.SetDatabaseConnectionRequest, context: Context
    ) -> notebook_pb2.SetDatabaseConnectionResponse:
        check = Violations()
        notebook_id = _notebook_id(check, request.notebook_id)
        check.database_url("database_url", request.database_url)
        check.not_negative("expected_revision", request.expected_revision)
        check.raise_if_any()
        notebook = await self._manager.set_database_url(
            current_user(), notebook_id, request.database_url, request.expected_revision
        )
        return notebook_pb2.SetDatabaseConnectionResponse(
            notebook=convert.summary_to_proto(notebook.summary())
        )

    async def ClearDatabaseConnection(
        self, request: notebook_pb2.ClearDatabaseConnectionRequest, context: Context
    ) -> notebook_pb2.ClearDatabaseConnectionResponse:
        check = Violations()
        notebook_id = _notebook_id(check, request.notebook_id)
        check.not_negative("expected_revision", request.expected_revision)
        check.raise_if_any()
        notebook = await self._manager.set_database_url(
            current_user(), notebook_id, "", request.expected_revision
        )
        return notebook_pb2.ClearDatabaseConnectionResponse(
            notebook=convert.summary_to_proto(notebook.summary())
        )

    async def SetRunMode(
        self, request: notebook_pb2.SetRunModeRequest, context: Context
    ) -> notebook_pb2.SetRunModeResponse:
        check = Violations()
        notebook_id = _notebook_id(check, request.notebook_id)
        run_mode = convert.run_mode_from_proto(request.run_mode)
        if run_mode is None:
            check.add("run_mode", "must be RUN_MODE_AUTOMATIC or RUN_MODE_LAZY")
        check.not_negative("expected_revision", request.expected_revision)
        check.raise_if_any()
        assert run_mode is not None
        notebook = await self._manager.set_run_mode(
            current_user(), notebook_id, run_mode, request.expected_revision
        )
        return notebook_pb2.SetRunModeResponse(
            notebook=convert.summary_to_proto(notebook.summary())
        )

    async def DeleteNotebook(
        self, request: notebook_pb2.DeleteNotebookRequest, context: Context
    ) -> notebook_pb2.DeleteNotebookResponse:
        check = Violations()
        notebook_id = _notebook_id(check, request.notebook_id)
        check.not_negative("expected_revision", request.expected_revision)
        check.raise_if_any()
        owner = current_user()
        await self._manager.delete_notebook(
            owner, notebook_id, request.expected_revision
        )
        await self._files.delete_all(owner, notebook_id)
        return notebook_pb2.DeleteNotebookResponse()

    async def CreateCell(
        self, request: notebook_pb2.CreateCellRequest, context: Context
    ) -> notebook_pb2.CreateCellResponse:
        check = Violations()
        notebook_id = _notebook_id(check, request.notebook_id)
        cell_type = self._cell_type(check, request.type)
        check.code("code", request.code, self._max_code_bytes)
        if request.result_name:
            check.result_name("result_name", request.result_name)
        index = request.index if request.HasField("index") else None
        if index is not None:
            check.not_negative("index", index)
        check.not_negative("expected_revision", request.expected_revision)
        check.raise_if_any()
        change = await self._manager.create_cell(
            current_user(),
            notebook_id,
            cell_type,
            request.code,
            request.result_name,
            index,
            request.expected_revision,
        )
        return notebook_pb2.CreateCellResponse(**_edited_cell(change))

    async def UpdateCell(
        self, request: notebook_pb2.UpdateCellRequest, context: Context
    ) -> notebook_pb2.UpdateCellResponse:
        check = Violations()
        notebook_id = _notebook_id(check, request.notebook_id)
        cell_id = _cell_id(check, request.cell_id)
        check.code("code", request.code, self._max_code_bytes)
        result_name = request.result_name if request.HasField("result_name") else None
        if result_name is not None:
            check.result_name("result_name", result_name)
        check.not_negative("expected_revision", request.expected_revision)
        check.raise_if_any()
        expected_code = (
            request.expected_code if request.HasField("expected_code") else None
        )
        change = await self._manager.update_cell(
            current_user(),
            notebook_id,
            cell_id,
            request.code,
            result_name,
            request.expected_revision,
            expected_code,
        )
        return notebook_pb2.UpdateCellResponse(**_edited_cell(change))

    async def SetCellDisabled(
        self, request: notebook_pb2.SetCellDisabledRequest, context: Context
    ) -> notebook_pb2.SetCellDisabledResponse:
        check = Violations()
        notebook_id = _notebook_id(check, request.notebook_id)
        cell_id = _cell_id(check, request.cell_id)
        check.not_negative("expected_revision", request.expected_revision)
        check.raise_if_any()
        change = await self._manager.set_cell_disabled(
            current_user(),
            notebook_id,
            cell_id,
            request.disabled,
            request.expected_revision,
        )
        assert change.cell is not None
        return notebook_pb2.SetCellDisabledResponse(
            cell=convert.cell_to_proto(change.cell), revision=change.revision
        )

    async def MoveCell(
        self, request: notebook_pb2.MoveCellRequest, context: Context
    ) -> notebook_pb2.MoveCellResponse:
        check = Violations()
        notebook_id = _notebook_id(check, request.notebook_id)
        cell_id = _cell_id(check, request.cell_id)
        check.not_negative("index", request.index)
        check.not_negative("expected_revision", request.expected_revision)
        check.raise_if_any()
        notebook = await self._manager.move_cell(
            current_user(),
            notebook_id,
            cell_id,
            request.index,
            request.expected_revision,
        )
        return notebook_pb2.MoveCellResponse(
            revision=notebook.revision, cell_ids=[cell.id for cell in notebook.cells]
        )

    async def DeleteCell(
        self, request: notebook_pb2.DeleteCellRequest, context: Context
    ) -> notebook_pb2.DeleteCellResponse:
        check = Violations()
        notebook_id = _notebook_id(check, request.notebook_id)
        cell_id = _cell_id(check, request.cell_id)
        check.not_negative("expected_revision", request.expected_revision)
        check.raise_if_any()
        change = await self._manager.delete_cell(
            current_user(), notebook_id, cell_id, request.expected_revision
        )
        return notebook_pb2.DeleteCellResponse(
            revision=change.revision, affected_cells=_cells(change.affected)
        )

    async def WatchNotebook(
        self, request: notebook_pb2.WatchNotebookRequest, context: Context
    ) -> AsyncIterator[notebook_pb2.WatchNotebookResponse]:
        check = Violations()
        notebook_id = _notebook_id(check, request.notebook_id)
        check.not_negative("since_revision", request.since_revision)
        check.raise_if_any()
        if self._feed is not None:
            snapshot = functools.partial(
                self._manager.get_notebook, current_user(), notebook_id
            )
            shared = self._feed.watch(notebook_id, request.since_revision, snapshot)
            async for response in shared:
                yield response
            return
        events = self._manager.watch(
            current_user(), notebook_id, request.since_revision
        )
        if not request.presence:
            async for item in events:
                yield _watch_event(item)
            return
        # The first event comes of reading the notebook as the caller's: only
        # then may the caller take a seat among those who have it open.
        first = await anext(events)
        revision = first.revision
        yield _watch_event(first)
        with self._presence.seat(notebook_id, current_user()) as seat:
            async for merged in with_presence(events, seat):
                if isinstance(merged, PresenceChanged):
                    viewers = self._presence.viewers(notebook_id)
                    yield convert.presence_event(viewers, seat, revision)
                else:
                    revision = merged.revision
                    yield _watch_event(merged)

    @staticmethod
    def _cell_type(
        check: Violations, value: notebook_pb2.CellType.ValueType
    ) -> CellType:
        if value == notebook_pb2.CELL_TYPE_UNSPECIFIED:
            return CellType.PYTHON
        cell_type = convert.cell_type_from_proto(value)
        if cell_type is None:
            check.add("type", f"{value} is not a known cell type")
            return CellType.PYTHON
        return cell_type


def _watch_event(item: Snapshot | Change) -> notebook_pb2.WatchNotebookResponse:
    if isinstance(item, Snapshot):
        return convert.snapshot_event(item)
    return convert.change_to_proto(item)


class _EditedCell(TypedDict):
    cell: notebook_pb2.Cell
    revision: int
    affected_cells: list[notebook_pb2.Cell]


def _edited_cell(change: CellChange) -> _EditedCell:
    """The fields CreateCellResponse and UpdateCellResponse share."""
    assert change.cell is not None
    return _EditedCell(
        cell=convert.cell_to_proto(change.cell),
        revision=change.revision,
        affected_cells=_cells(change.affected),
    )


class NotebookInternalServicer(notebook_pb2_grpc.NotebookInternalServiceServicer):
    """RPCs for other Reflow services: recording run results."""

    def __init__(self, manager: NotebookManager) -> None:
        self._manager = manager

    async def RecordCellResult(
        self, request: notebook_pb2.RecordCellResultRequest, context: Context
    ) -> notebook_pb2.RecordCellResultResponse:
        check = Violations()
        notebook_id = _notebook_id(check, request.notebook_id)
        cell_id = _cell_id(check, request.cell_id)
        status = convert.status_from_proto(request.result.status)
        if not request.HasField("result"):
            check.add("result", "is required")
        elif status not in _RESULT_STATUSES:
            check.add("result.status", _RESULT_STATUS_RULE)
        check.raise_if_any()
        assert status is not None
        revision = await self._manager.record_result(
            current_user(),
            notebook_id,
            cell_id,
            status,
            convert.result_to_json(request.result),
        )
        return notebook_pb2.RecordCellResultResponse(revision=revision)

    async def RecordCellResults(
        self, request: notebook_pb2.RecordCellResultsRequest, context: Context
    ) -> notebook_pb2.RecordCellResultsResponse:
        check = Violations()
        notebook_id = _notebook_id(check, request.notebook_id)
        if not request.results:
            check.add("results", "is required")
        results: list[tuple[CellId, CellStatus, dict[str, Any]]] = []
        seen: set[str] = set()
        for index, entry in enumerate(request.results):
            field = f"results[{index}]"
            check.identifier(f"{field}.cell_id", entry.cell_id)
            if entry.cell_id in seen:
                check.add(f"{field}.cell_id", f"cell {entry.cell_id!r} appears twice")
            seen.add(entry.cell_id)
            status = convert.status_from_proto(entry.result.status)
            if status is None or status not in _RESULT_STATUSES:
                check.add(f"{field}.result.status", _RESULT_STATUS_RULE)
                continue
            results.append(
                (CellId(entry.cell_id), status, convert.result_to_json(entry.result))
            )
        check.raise_if_any()
        revision, recorded = await self._manager.record_results(
            current_user(), notebook_id, results
        )
        return notebook_pb2.RecordCellResultsResponse(
            revision=revision, recorded_cell_ids=recorded
        )

    async def GetDatabaseConnection(
        self, request: notebook_pb2.GetDatabaseConnectionRequest, context: Context
    ) -> notebook_pb2.GetDatabaseConnectionResponse:
        check = Violations()
        notebook_id = _notebook_id(check, request.notebook_id)
        check.raise_if_any()
        snapshot = await self._manager.get_notebook(current_user(), notebook_id)
        return notebook_pb2.GetDatabaseConnectionResponse(
            database_url=snapshot.notebook.database_url
        )
