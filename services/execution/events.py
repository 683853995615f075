"""Builders of the ExecutionEvent messages a run streams."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reflow.execution.v1 import execution_pb2
from reflow.notebook.v1 import notebook_pb2

if TYPE_CHECKING:
    from collections.abc import Sequence


def run_started(
    cell_ids: Sequence[str], skipped: Sequence[str]
) -> execution_pb2.ExecutionEvent:
    return execution_pb2.ExecutionEvent(
        run_started=execution_pb2.RunStarted(
            cell_ids=cell_ids, skipped_cell_ids=skipped
        )
    )


def cell_queued(cell_id: str) -> execution_pb2.ExecutionEvent:
    return execution_pb2.ExecutionEvent(
        cell_id=cell_id, cell_queued=execution_pb2.CellQueued()
    )


def cell_started(cell_id: str, execution_count: int) -> execution_pb2.ExecutionEvent:
    return execution_pb2.ExecutionEvent(
        cell_id=cell_id,
        cell_started=execution_pb2.CellStarted(execution_count=execution_count),
    )


def stream_chunk(
    cell_id: str, chunk: execution_pb2.StreamChunk
) -> execution_pb2.ExecutionEvent:
    return execution_pb2.ExecutionEvent(cell_id=cell_id, stream_chunk=chunk)


def output(cell_id: str, value: notebook_pb2.Output) -> execution_pb2.ExecutionEvent:
    return execution_pb2.ExecutionEvent(cell_id=cell_id, output=value)


def cell_finished(
    cell_id: str, result: notebook_pb2.CellResult
) -> execution_pb2.ExecutionEvent:
    return execution_pb2.ExecutionEvent(
        cell_id=cell_id, cell_finished=execution_pb2.CellFinished(result=result)
    )


def run_finished(
    status: notebook_pb2.CellStatus.ValueType,
) -> execution_pb2.ExecutionEvent:
    return execution_pb2.ExecutionEvent(
        run_finished=execution_pb2.RunFinished(status=status)
    )


def kernel_state(
    state: execution_pb2.KernelState.ValueType, reason: str
) -> execution_pb2.ExecutionEvent:
    return execution_pb2.ExecutionEvent(
        kernel_state_changed=execution_pb2.KernelStateChanged(
            state=state, reason=reason
        )
    )


def error(type_name: str, message: str) -> notebook_pb2.CellError:
    """A cell error raised by Reflow itself rather than by user code."""
    return notebook_pb2.CellError(
        type=type_name, message=message, traceback=f"{type_name}: {message}"
    )
