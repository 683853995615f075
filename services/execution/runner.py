"""The run loop: one run of a notebook, from its plan to each cell's result.

A run is given the newest copy of the notebook and the cells asked for. It

1. tidies the kernel first: names of cells gone from the notebook are
   deleted (what depended on them joins the run), a disabled cell that was
   edited loses its names, so does a cell that held a contested name and
   was edited (it no longer holds it), and held cells that can run now (a conflict was
   resolved, a cell enabled) join the run — in lazy mode, all of these are
   marked stale instead of run;
2. plans the run (`scheduler.plan`, a pure function);
3. walks the plan in order. A cell with an analysis error is reported as an
   ERROR and loses its names; a cell downstream of a failure is BLOCKED,
   naming the failed cell, and loses its names too, so no stale value
   survives an error; a disabled cell or one below it is DISABLED, naming
   the disabled cell, and keeps its names; every other cell runs in the
   kernel, its events forwarded as they come. In lazy mode, the cells
   downstream of the run are marked STALE first.

Cancellation: an interrupt sets `RunState.interrupted`; the running cell
gets SIGINT (`lifecycle.py`) and the cells after it are told they were not
run (INTERRUPTED, nothing stored). A kernel that dies mid-cell ends the run
the same way, the cell reporting how it died.

With a notebook's files (`files.py`), the run first brings the kernel's
working directory up to date, and each file a cell changed there is stored
before the cell finishes; a file that could not be stored is said on the
cell's stderr.

Every result is handed to `record` (the notebook service stores it) and
published as `cell_finished`; the session publishes `run_finished` once the
results are stored.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from reflow.execution.v1 import execution_pb2, kernel_pb2
from reflow.notebook.v1 import notebook_pb2
from services.execution import events, metrics, scheduler
from services.execution.collect import CellCollector
from services.execution.convert import graph_of, is_lazy
from services.execution.kernel.private import private_pattern
from services.execution.kernel.process import KernelDied
from services.shared.dataflow import (
    CellId,
    DependencyGraph,
    MultipleDefinitionError,
    imports_only,
)
from services.shared.errors import ServiceError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Mapping

    from services.execution.config import KernelSettings
    from services.execution.files import FileListing, NotebookFiles
    from services.execution.ledger import KernelLedger
    from services.execution.lifecycle import Kernel, KernelLifecycle
    from services.execution.runs import MergedRun, RunState
    from services.shared.dataflow import GraphError

logger = logging.getLogger(__name__)

Status = notebook_pb2.CellStatus
Cells = dict[CellId, notebook_pb2.Cell]

_RUNNABLE_TYPES = {notebook_pb2.CELL_TYPE_PYTHON, notebook_pb2.CELL_TYPE_SQL}


class _RunAborted(Exception):
    """The kernel went away mid-run; the rest of the run is not run."""

    def __init__(self, result: notebook_pb2.CellResult) -> None:
        super().__init__(result.error.message)
        self.result = result


def _contested(graph: DependencyGraph, cell_id: CellId) -> bool:
    return any(
        isinstance(error, MultipleDefinitionError)
        for error in graph.cell_errors(cell_id)
    )


class Runner:
    """Runs a notebook's runs, one at a time, on its kernel."""

    def __init__(
        self,
        lifecycle: KernelLifecycle,
        ledger: KernelLedger,
        settings: KernelSettings,
        emit: Callable[[str, execution_pb2.ExecutionEvent], None],
        record: Callable[[CellId, notebook_pb2.CellResult], None],
        files: NotebookFiles | None = None,
    ) -> None:
        self._lifecycle = lifecycle
        self._files = files
        self._ledger = ledger
        self._settings = settings
        self._emit = emit
        self._record = record
        self._graph = DependencyGraph()
        self.current: RunState | None = None

    async def execute(self, run: RunState, merged: MergedRun) -> Status.ValueType:
        """Run one (merged) request; the run's overall status."""
        self.current = run
        try:
            return await self._execute(run, merged)
        finally:
            self.current = None

    async def _execute(self, run: RunState, merged: MergedRun) -> Status.ValueType:
        notebook = merged.notebook
        cells = {CellId(cell.id): cell for cell in notebook.cells}
        old_graph, graph = self._graph, graph_of(notebook)
        self._graph = graph
        try:
            kernel = await self._lifecycle.ensure(run.run_id)
        except ServiceError as error:
            dead = self._lifecycle.state
            self._emit(run.run_id, events.kernel_state(dead, str(error)))
            return Status.CELL_STATUS_ERROR
        await self._sync_files(kernel, merged.files)
        lazy = is_lazy(notebook)
        runnable = {c for c, cell in cells.items() if cell.type in _RUNNABLE_TYPES}
        disabled = {c for c, cell in cells.items() if cell.disabled}
        errors = graph.errors()
        stale = {c for c in runnable if self._ledger.is_stale(c, cells[c].code)}
        requested = set(merged.cells)
        if merged.run_all_stale:
            requested |= stale - disabled
        woken = await self._tidy(kernel, old_graph, graph, cells, disabled, errors)
        if lazy:
            stale |= woken
        else:
            requested |= woken
        plan = scheduler.plan(
            graph,
            scheduler.Request(
                cells=requested,
                ran=self._ledger.ran.keys(),
                runnable=runnable,
                disabled=disabled,
                quiet=self._quiet(requested, cells, graph),
                lazy=lazy,
                stale=stale,
            ),
            errors,
        )
        ready = [
            c for c in plan.order if c not in plan.skipped and c not in plan.disabled
        ]
        self._emit(run.run_id, events.run_started(ready, list(plan.skipped)))
        for cell_id in (*plan.mark_stale, *(woken if lazy else ())):
            self._mark_stale(run, cell_id)
        return await self._walk(run, kernel, plan, graph, cells, merged.database_url)

    async def _walk(
        self,
        run: RunState,
        kernel: Kernel,
        plan: scheduler.Plan,
        graph: DependencyGraph,
        cells: Cells,
        database_url: str,
    ) -> Status.ValueType:
        failed: dict[CellId, CellId] = {}
        status: Status.ValueType = Status.CELL_STATUS_SUCCESS
        for position, cell_id in enumerate(plan.order):
            if run.interrupted:
                self._not_run(run, plan.order[position:])
                return Status.CELL_STATUS_INTERRUPTED
            cell = cells[cell_id]
            origin = scheduler.blocked_by(graph, cell_id, failed)
            try:
                if cell_id in plan.disabled:
                    result = self._disabled(cell, plan.disabled[cell_id])
                elif cell_id in plan.skipped:
                    result = await self._skip(kernel, cell, plan.skipped[cell_id])
                elif origin is not None:
                    result = await self._block(kernel, cell_id, origin)
                else:
                    result = await self._run_cell(
                        run, kernel, cell, graph, database_url
                    )
            except _RunAborted as aborted:
                self._finish(run, cell_id, aborted.result)
                self._not_run(run, plan.order[position + 1 :])
                return aborted.result.status
            if result.status not in (
                Status.CELL_STATUS_SUCCESS,
                Status.CELL_STATUS_DISABLED,
            ):
                failed[cell_id] = origin or cell_id
                status = Status.CELL_STATUS_ERROR
            if result.status == Status.CELL_STATUS_INTERRUPTED:
                status = Status.CELL_STATUS_INTERRUPTED
            self._finish(run, cell_id, result)
        return status

    # -- before the plan -----------------------------------------------------

    async def _tidy(
        self,
        kernel: Kernel,
        old_graph: DependencyGraph,
        graph: DependencyGraph,
        cells: Cells,
        disabled: set[CellId],
        errors: Mapping[CellId, GraphError],
    ) -> set[CellId]:
        """Bring the kernel in line with the notebook; the cells that should
        run (or, lazily, be marked stale) because of what changed."""
        gone = [cell_id for cell_id in self._ledger.ran if cell_id not in cells]
        edited = [
            cell_id
            for cell_id in disabled | errors.keys()
            if self._ledger.edited(cell_id, cells[cell_id].code)
            and (cell_id in disabled or _contested(graph, cell_id))
        ]
        await self._delete(kernel, [*gone, *edited])
        woken = old_graph.descendants(c for c in gone if c in old_graph)
        woken = {cell_id for cell_id in woken if cell_id in cells}
        troubled = errors.keys() | disabled
        for cell_id, code in self._ledger.held().items():
            cell = cells.get(cell_id)
            if cell is None or cell.code != code:
                self._ledger.release(cell_id)  # gone, or edited: it waits to be run
            elif cell_id not in troubled and not graph.ancestors({cell_id}) & troubled:
                self._ledger.release(cell_id)
                woken.add(cell_id)
        return woken

    def _quiet(
        self, requested: Iterable[CellId], cells: Cells, graph: DependencyGraph
    ) -> dict[CellId, frozenset[str]]:
        """Import-only cells that ran fine before, with the names that changed."""
        quiet: dict[CellId, frozenset[str]] = {}
        for cell_id in requested:
            entry = self._ledger.ran.get(cell_id)
            cell = cells.get(cell_id)
            if entry is None or not entry.succeeded or cell is None:
                continue
            if cell.type == notebook_pb2.CELL_TYPE_PYTHON and imports_only(cell.code):
                quiet[cell_id] = graph.analysis(cell_id).writes ^ entry.names
        return quiet

    # -- cells that do not run -----------------------------------------------

    def _disabled(self, cell: notebook_pb2.Cell, by: CellId) -> notebook_pb2.CellResult:
        self._ledger.hold(CellId(cell.id), cell.code)
        result = notebook_pb2.CellResult(status=Status.CELL_STATUS_DISABLED)
        if by != cell.id:
            result.disabled_by_cell_id = by
        return result

    async def _skip(
        self, kernel: Kernel, cell: notebook_pb2.Cell, error: GraphError
    ) -> notebook_pb2.CellResult:
        cell_id = CellId(cell.id)
        await self._delete(kernel, [cell_id])
        self._ledger.hold(cell_id, cell.code)
        result = notebook_pb2.CellResult(status=Status.CELL_STATUS_ERROR)
        result.error.CopyFrom(events.error("AnalysisError", error.message))
        return result

    async def _block(
        self, kernel: Kernel, cell_id: CellId, origin: CellId
    ) -> notebook_pb2.CellResult:
        await self._delete(kernel, [cell_id])
        return notebook_pb2.CellResult(
            status=Status.CELL_STATUS_BLOCKED, blocked_by_cell_id=origin
        )

    def _mark_stale(self, run: RunState, cell_id: CellId) -> None:
        if cell_id in self._ledger.stale:
            return
        self._ledger.mark_stale(cell_id)
        self._finish(
            run, cell_id, notebook_pb2.CellResult(status=Status.CELL_STATUS_STALE)
        )

    async def _delete(self, kernel: Kernel, cell_ids: Collection[CellId]) -> None:
        """Delete what these cells defined, private names included."""
        if not cell_ids:
            return
        names = self._ledger.forget(cell_ids)
        names += [private_pattern(cell_id) for cell_id in cell_ids]
        try:
            await kernel.delete_names(names)
        except KernelDied as died:
            self._lifecycle.lost(kernel, "", died.reason)
            result = notebook_pb2.CellResult(status=Status.CELL_STATUS_ERROR)
            result.error.CopyFrom(events.error("KernelDied", died.reason))
            raise _RunAborted(result) from died

    # -- cells that run ------------------------------------------------------

    async def _run_cell(
        self,
        run: RunState,
        kernel: Kernel,
        cell: notebook_pb2.Cell,
        graph: DependencyGraph,
        database_url: str,
    ) -> notebook_pb2.CellResult:
        cell_id = CellId(cell.id)
        writes = graph.analysis(cell_id).writes
        previous = self._ledger.ran.get(cell_id)
        delete = set(writes) | (previous.names if previous else frozenset())
        count = self._lifecycle.begin_cell()
        request = kernel_pb2.ExecuteRequest(
            cell_id=cell_id,
            cell_type=cell.type,
            code=cell.code,
            result_name=cell.result_name,
            delete_names=[*sorted(delete), private_pattern(cell_id)],
            database_url=database_url,
            execution_count=count,
            output_limit_bytes=self._settings.output_limit_bytes,
        )
        self._ledger.starting(cell_id, writes, cell.code)
        result = notebook_pb2.CellResult(execution_count=count)
        result.start_time.GetCurrentTime()
        started = time.monotonic()
        collector = CellCollector(self._settings.output_limit_bytes)
        run.running_cell = cell_id
        self._emit(run.run_id, events.cell_started(cell_id, count))
        timeout = self._lifecycle.arm_timeout(run, cell_id, lambda: self.current)
        try:
            async for event in kernel.execute(request):
                if event.HasField("file_changed"):
                    await self._store_file(run, cell_id, event.file_changed, collector)
                else:
                    self._forward(run, cell_id, event, collector, result)
        except KernelDied as died:
            result.status, message = self._lifecycle.death_status(run, died)
            result.error.CopyFrom(events.error("KernelDied", message))
            self._lifecycle.lost(kernel, run.run_id, died.reason)
            collector.fill(result)
            result.duration.FromNanoseconds(int((time.monotonic() - started) * 1e9))
            _count_cell(result)
            raise _RunAborted(result) from died
        finally:
            if timeout is not None:
                timeout.cancel()
            run.running_cell = ""
            self._lifecycle.end_cell()
        collector.fill(result)
        if not result.HasField("duration"):
            result.duration.FromNanoseconds(int((time.monotonic() - started) * 1e9))
        _count_cell(result)
        self._ledger.finished(cell_id, result.status == Status.CELL_STATUS_SUCCESS)
        return result

    def _forward(
        self,
        run: RunState,
        cell_id: CellId,
        event: kernel_pb2.KernelEvent,
        collector: CellCollector,
        result: notebook_pb2.CellResult,
    ) -> None:
        kind = event.WhichOneof("event")
        if kind == "stream_chunk":
            metrics.OUTPUT_BYTES.labels("stream").inc(event.stream_chunk.ByteSize())
            collector.add_chunk(event.stream_chunk)
            self._emit(run.run_id, events.stream_chunk(cell_id, event.stream_chunk))
        elif kind == "output":
            metrics.OUTPUT_BYTES.labels("output").inc(event.output.ByteSize())
            collector.add_output(event.output)
            self._emit(run.run_id, events.output(cell_id, event.output))
        elif kind == "done":
            done = event.done
            result.status = done.status
            if done.HasField("error"):
                result.error.CopyFrom(done.error)
            if done.HasField("duration"):
                result.duration.CopyFrom(done.duration)
            result.output_truncated = done.output_truncated

    # -- the notebook's files ------------------------------------------------

    async def _sync_files(self, kernel: Kernel, listing: FileListing | None) -> None:
        if self._files is None:
            return
        try:
            await self._files.sync(kernel, listing)
        except ServiceError as error:
            # The run goes on: cells that need no file still work, and the
            # next run tries again.
            logger.warning("could not bring the kernel its files: %s", error)

    async def _store_file(
        self,
        run: RunState,
        cell_id: CellId,
        change: kernel_pb2.FileChanged,
        collector: CellCollector,
    ) -> None:
        if self._files is None:
            return
        note = await self._files.store(change)
        if note:
            chunk = execution_pb2.StreamChunk(
                stream=execution_pb2.STREAM_STDERR, text=f"reflow: {note}\n"
            )
            collector.add_chunk(chunk)
            self._emit(run.run_id, events.stream_chunk(cell_id, chunk))

    # -- results -------------------------------------------------------------

    def _finish(
        self, run: RunState, cell_id: CellId, result: notebook_pb2.CellResult
    ) -> None:
        self._record(cell_id, result)
        self._emit(run.run_id, events.cell_finished(cell_id, result))

    def _not_run(self, run: RunState, cell_ids: Iterable[CellId]) -> None:
        """Cells a stopped run will not reach: told, but nothing is stored."""
        for cell_id in cell_ids:
            result = notebook_pb2.CellResult(status=Status.CELL_STATUS_INTERRUPTED)
            self._emit(run.run_id, events.cell_finished(cell_id, result))


def _count_cell(result: notebook_pb2.CellResult) -> None:
    status = Status.Name(result.status).removeprefix("CELL_STATUS_").lower()
    metrics.CELL_SECONDS.labels(status).observe(result.duration.ToNanoseconds() / 1e9)
