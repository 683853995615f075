"""Protobuf <-> notebook domain objects; the only module that knows both."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format, timestamp_pb2

from reflow.notebook.v1 import notebook_pb2
from services.notebook.changes import Change, ChangeKind, Snapshot
from services.notebook.exporting import ExportFormat
from services.notebook.importing import ImportFormat
from services.notebook.models import CellStatus, CellType, NotebookSummary, RunMode
from services.shared.dataflow import (
    CellAnalysisError,
    CycleError,
    GraphError,
    MultipleDefinitionError,
)
from services.shared.redaction import mask_url_password

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from services.notebook.files import StoredFile
    from services.notebook.graphs import CellView
    from services.notebook.presence import Seat

_CELL_TYPES = {
    CellType.PYTHON: notebook_pb2.CELL_TYPE_PYTHON,
    CellType.SQL: notebook_pb2.CELL_TYPE_SQL,
    CellType.MARKDOWN: notebook_pb2.CELL_TYPE_MARKDOWN,
}
_CELL_TYPES_BACK = {v: k for k, v in _CELL_TYPES.items()}

_STATUSES = {
    CellStatus.IDLE: notebook_pb2.CELL_STATUS_IDLE,
    CellStatus.QUEUED: notebook_pb2.CELL_STATUS_QUEUED,
    CellStatus.RUNNING: notebook_pb2.CELL_STATUS_RUNNING,
    CellStatus.SUCCESS: notebook_pb2.CELL_STATUS_SUCCESS,
    CellStatus.ERROR: notebook_pb2.CELL_STATUS_ERROR,
    CellStatus.BLOCKED: notebook_pb2.CELL_STATUS_BLOCKED,
    CellStatus.STALE: notebook_pb2.CELL_STATUS_STALE,
    CellStatus.INTERRUPTED: notebook_pb2.CELL_STATUS_INTERRUPTED,
    CellStatus.DISABLED: notebook_pb2.CELL_STATUS_DISABLED,
}
_STATUSES_BACK = {v: k for k, v in _STATUSES.items()}

_RUN_MODES = {
    RunMode.AUTOMATIC: notebook_pb2.RUN_MODE_AUTOMATIC,
    RunMode.LAZY: notebook_pb2.RUN_MODE_LAZY,
}
_RUN_MODES_BACK = {v: k for k, v in _RUN_MODES.items()}

_IMPORT_FORMATS = {
    notebook_pb2.IMPORT_FORMAT_IPYNB: ImportFormat.IPYNB,
    notebook_pb2.IMPORT_FORMAT_PY_PERCENT: ImportFormat.PY_PERCENT,
    notebook_pb2.IMPORT_FORMAT_MARIMO: ImportFormat.MARIMO,
}
_EXPORT_FORMATS = {
    notebook_pb2.EXPORT_FORMAT_IPYNB: ExportFormat.IPYNB,
    notebook_pb2.EXPORT_FORMAT_PYTHON: ExportFormat.PYTHON,
    notebook_pb2.EXPORT_FORMAT_MARIMO: ExportFormat.MARIMO,
    notebook_pb2.EXPORT_FORMAT_HTML: ExportFormat.HTML,
}

_SYNTAX_LINE = re.compile(r"^syntax error at line (\d+)")


def cell_type_from_proto(value: notebook_pb2.CellType.ValueType) -> CellType | None:
    """The domain cell type, or None for UNSPECIFIED / unknown values."""
    return _CELL_TYPES_BACK.get(value)


def status_from_proto(value: notebook_pb2.CellStatus.ValueType) -> CellStatus | None:
    """The domain status, or None for UNSPECIFIED / unknown values."""
    return _STATUSES_BACK.get(value)


def import_format_from_proto(
    value: notebook_pb2.ImportFormat.ValueType,
) -> ImportFormat | None:
    """The domain import format, or None for UNSPECIFIED / unknown values."""
    return _IMPORT_FORMATS.get(value)


def export_format_from_proto(
    value: notebook_pb2.ExportFormat.ValueType,
) -> ExportFormat | None:
    """The domain export format, or None for UNSPECIFIED / unknown values."""
    return _EXPORT_FORMATS.get(value)


def file_to_proto(stored: StoredFile) -> notebook_pb2.NotebookFile:
    """A file's listing entry."""
    return notebook_pb2.NotebookFile(
        path=stored.path,
        size_bytes=stored.size_bytes,
        update_time=timestamp(stored.update_time),
    )


def run_mode_from_proto(value: notebook_pb2.RunMode.ValueType) -> RunMode | None:
    """The domain run mode, or None for UNSPECIFIED / unknown values."""
    return _RUN_MODES_BACK.get(value)


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def summary_to_proto(summary: NotebookSummary) -> notebook_pb2.Notebook:
    """A notebook without cells, its database password masked."""
    return notebook_pb2.Notebook(
        id=summary.id,
        name=summary.name,
        owner=summary.owner,
        database_url=mask_url_password(summary.database_url),
        revision=summary.revision,
        create_time=timestamp(summary.create_time),
        update_time=timestamp(summary.update_time),
        cell_count=summary.cell_count,
        run_mode=_RUN_MODES[summary.run_mode],
    )


def snapshot_to_proto(snapshot: Snapshot) -> notebook_pb2.Notebook:
    """A notebook with every cell and its analysis."""
    message = summary_to_proto(snapshot.notebook.summary())
    message.cells.extend(cell_to_proto(view) for view in snapshot.cells)
    return message


def cell_to_proto(view: CellView) -> notebook_pb2.Cell:
    """A cell with its analysis and last result."""
    cell = view.cell
    message = notebook_pb2.Cell(
        id=cell.id,
        type=_CELL_TYPES[cell.type],
        code=cell.code,
        result_name=cell.result_name,
        reads=view.reads,
        writes=view.writes,
        status=_STATUSES[cell.status],
        disabled=cell.disabled,
        parent_ids=view.parents,
        child_ids=view.children,
        deletes=view.deletes,
    )
    errors = [analysis_error_to_proto(error) for error in view.errors]
    if errors:
        message.analysis_error.CopyFrom(errors[0])
        message.analysis_errors.extend(errors)
    if cell.result is not None:
        message.result.CopyFrom(result_from_json(cell.result))
    return message


def analysis_error_to_proto(error: GraphError) -> notebook_pb2.AnalysisError:
    """Why a cell cannot run."""
    kinds = notebook_pb2.AnalysisError
    message = notebook_pb2.AnalysisError(message=error.message)
    if isinstance(error, MultipleDefinitionError):
        message.kind = kinds.KIND_MULTIPLE_DEFINITION
        message.names.extend(error.names)
        message.cell_ids.extend(error.cells)
        message.contested.extend(
            notebook_pb2.ContestedName(name=contest.name, cell_ids=contest.cells)
            for contest in error.contested
        )
    elif isinstance(error, CycleError):
        message.kind = kinds.KIND_CYCLE
        message.cell_ids.extend(error.cells)
    elif isinstance(error, CellAnalysisError):
        line = _SYNTAX_LINE.match(error.message)
        is_syntax = error.message.startswith("syntax error")
        message.kind = kinds.KIND_SYNTAX if is_syntax else kinds.KIND_UNSUPPORTED
        message.line = int(line.group(1)) if line else 0
    return message


def result_from_json(result: Mapping[str, Any]) -> notebook_pb2.CellResult:
    """A stored result (canonical proto-JSON) as a message."""
    return json_format.ParseDict(
        dict(result), notebook_pb2.CellResult(), ignore_unknown_fields=True
    )


def result_to_json(result: notebook_pb2.CellResult) -> dict[str, Any]:
    """A result message as the JSON the store keeps."""
    return json_format.MessageToDict(result)


def change_to_proto(change: Change) -> notebook_pb2.WatchNotebookResponse:
    """One change event for WatchNotebook."""
    reply = notebook_pb2.WatchNotebookResponse(revision=change.revision)
    kind = change.kind
    if kind is ChangeKind.CELL_CREATED:
        assert change.cell is not None
        assert change.index is not None
        reply.cell_created.cell.CopyFrom(cell_to_proto(change.cell))
        reply.cell_created.index = change.index
    elif kind is ChangeKind.CELL_UPDATED:
        assert change.cell is not None
        reply.cell_updated.cell.CopyFrom(cell_to_proto(change.cell))
    elif kind is ChangeKind.CELL_MOVED:
        assert change.cell_id is not None
        assert change.index is not None
        reply.cell_moved.cell_id = change.cell_id
        reply.cell_moved.index = change.index
    elif kind is ChangeKind.CELL_DELETED:
        assert change.cell_id is not None
        reply.cell_deleted.cell_id = change.cell_id
    elif kind is ChangeKind.NOTEBOOK_CHANGED:
        reply.notebook_changed.notebook.CopyFrom(summary_to_proto(change.notebook))
    elif kind is ChangeKind.RESULT_RECORDED:
        assert change.cell is not None
        reply.cell_result_recorded.cell_id = change.cell.cell.id
        if change.cell.cell.result is not None:
            reply.cell_result_recorded.result.CopyFrom(
                result_from_json(change.cell.cell.result)
            )
    else:
        reply.notebook_deleted.notebook_id = change.notebook.id
    return reply


def snapshot_event(snapshot: Snapshot) -> notebook_pb2.WatchNotebookResponse:
    """The snapshot event that opens (or resynchronises) a watch."""
    return notebook_pb2.WatchNotebookResponse(
        revision=snapshot.revision, snapshot=snapshot_to_proto(snapshot)
    )


def presence_event(
    seats: Sequence[Seat], you: Seat, revision: int
) -> notebook_pb2.WatchNotebookResponse:
    """Who has the notebook open, as the stream holding `you` sees it."""
    reply = notebook_pb2.WatchNotebookResponse(revision=revision)
    reply.presence.you = you.viewer_id
    for seat in seats:
        viewer = reply.presence.viewers.add(viewer_id=seat.viewer_id, user=seat.user)
        viewer.since.FromNanoseconds(int(seat.since * 1e9))
    return reply
