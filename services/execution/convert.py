"""Protobuf <-> the execution service's own objects; the only module that
knows both (events of a run are built in `events.py`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from google.protobuf import duration_pb2, timestamp_pb2

from reflow.execution.v1 import execution_pb2
from reflow.notebook.v1 import notebook_pb2
from services.shared.dataflow import CellAnalysis, CellId, DependencyGraph

if TYPE_CHECKING:
    from services.execution.lifecycle import KernelLifecycle

_FAILED_ANALYSIS = (
    notebook_pb2.AnalysisError.KIND_SYNTAX,
    notebook_pb2.AnalysisError.KIND_UNSUPPORTED,
)


def graph_of(notebook: notebook_pb2.Notebook) -> DependencyGraph:
    """The dependency graph, from the analysis the notebook service did.

    Multiple definitions and cycles are derived again from the names; only
    the cell's own analysis errors come from the message.
    """
    graph = DependencyGraph()
    for cell in notebook.cells:
        error = cell.analysis_error
        analysis = (
            CellAnalysis.failed(error.message)
            if error.kind in _FAILED_ANALYSIS
            else CellAnalysis(
                writes=frozenset(cell.writes),
                reads=frozenset(cell.reads),
                deletes=frozenset(cell.deletes),
            )
        )
        graph.set_cell(CellId(cell.id), analysis)
    return graph


def is_lazy(notebook: notebook_pb2.Notebook) -> bool:
    """Whether the notebook marks descendants stale instead of running them."""
    return notebook.run_mode == notebook_pb2.RUN_MODE_LAZY


def kernel_to_proto(
    notebook_id: str, owner: str, lifecycle: KernelLifecycle, running_cell: str
) -> execution_pb2.Kernel:
    """The kernel as GetKernel and ListKernels show it."""
    kernel = lifecycle.kernel
    state = lifecycle.state
    if kernel is not None and not kernel.alive:
        # Killed while idle: its exit is known before any run notices it.
        kernel, state = None, execution_pb2.KERNEL_STATE_DEAD
    message = execution_pb2.Kernel(
        notebook_id=notebook_id,
        owner=owner,
        state=state,
        execution_count=lifecycle.execution_count,
        running_cell_id=running_cell,
    )
    message.last_activity_time.FromSeconds(int(lifecycle.last_activity))
    if kernel is not None:
        message.pid = kernel.pid
        message.memory_bytes = kernel.memory_bytes()
        message.start_time.CopyFrom(_timestamp(kernel.start_time))
        message.uptime.CopyFrom(_duration(time.time() - kernel.start_time))
    return message


def _timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def _duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(int(max(seconds, 0.0) * 1e9))
    return duration
