"""One notebook's kernel, its runs, and what the kernel has run so far.

A Session owns at most one kernel process. Runs of the notebook happen one
at a time, in a task of the session's own (`_run_queued`), so a caller that
disconnects does not stop a run that collaborators may be watching. Every
event of a run is published on the execution hub under the notebook's id;
RunCells callers and WatchExecution watchers alike read from there, each
with a bounded queue.

What the kernel holds is tracked per cell (`_ran`: the names each cell wrote
when it last ran, `_ran_code`: the code it ran), which drives three rules:
before a cell runs, the names it wrote last time are deleted; a cell that is
gone from the notebook has its names deleted and what depended on it re-run;
and ancestors that have not run in this kernel run first (scheduler.py).

Interrupts follow DESIGN §3: SIGINT stops the running cell and the rest of
that run is dropped; a kernel that ignores SIGINT for `interrupt_grace_s` is
killed, and the next run starts a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING

from google.protobuf import duration_pb2, timestamp_pb2

from reflow.execution.v1 import execution_pb2, kernel_pb2
from reflow.notebook.v1 import notebook_pb2
from services.execution import events
from services.execution.collect import CellCollector
from services.execution.errors import WatcherTooSlow
from services.execution.kernel.process import KernelDied
from services.execution.runs import MergedRun, RunRequest, RunState, merge
from services.execution.scheduler import blocked_by, plan_run
from services.shared.dataflow import CellAnalysis, CellId, DependencyGraph
from services.shared.errors import ServiceError
from services.shared.fanout import Lagged

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

    from services.execution.config import KernelSettings
    from services.execution.kernel.process import KernelProcess
    from services.execution.recorder import ResultRecorder
    from services.shared.fanout import EventHub

logger = logging.getLogger(__name__)

ExecutionEvent = execution_pb2.ExecutionEvent
Status = notebook_pb2.CellStatus
KernelState = execution_pb2.KernelState

_RUNNABLE_TYPES = {notebook_pb2.CELL_TYPE_PYTHON, notebook_pb2.CELL_TYPE_SQL}


class _RunAborted(Exception):
    """The kernel went away mid-run; the rest of the run is not run."""

    def __init__(self, result: notebook_pb2.CellResult) -> None:
        super().__init__(result.error.message)
        self.result = result


def graph_of(notebook: notebook_pb2.Notebook) -> DependencyGraph:
    """The dependency graph, from the analysis the notebook service did."""
    graph = DependencyGraph()
    for cell in notebook.cells:
        error = cell.analysis_error
        syntax = error.kind in (
            notebook_pb2.AnalysisError.KIND_SYNTAX,
            notebook_pb2.AnalysisError.KIND_UNSUPPORTED,
        )
        analysis = (
            CellAnalysis.failed(error.message)
            if syntax
            else CellAnalysis(
                writes=frozenset(cell.writes), reads=frozenset(cell.reads)
            )
        )
        graph.set_cell(CellId(cell.id), analysis)
    return graph


class Session:
    """A notebook's kernel and the runs on it."""

    def __init__(
        self,
        notebook_id: str,
        owner: str,
        spawn: Callable[[], Awaitable[KernelProcess]],
        settings: KernelSettings,
        recorder: ResultRecorder,
        hub: EventHub[ExecutionEvent],
    ) -> None:
        self.notebook_id = notebook_id
        self.owner = owner
        self._spawn = spawn
        self._settings = settings
        self._recorder = recorder
        self._hub = hub
        self.kernel: KernelProcess | None = None
        self.state: KernelState.ValueType = KernelState.KERNEL_STATE_DEAD
        self.execution_count = 0
        self.last_activity = time.time()
        self._ran: dict[CellId, frozenset[str]] = {}
        self._ran_code: dict[CellId, str] = {}
        self._graph = DependencyGraph()
        self._queue: list[RunRequest] = []
        self._runner: asyncio.Task[None] | None = None
        self._run: RunState | None = None
        self._sequence = 0
        self._kernel_lock = asyncio.Lock()

    # -- public --------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while a run is in progress or waiting."""
        return self._runner is not None

    @property
    def running_cell(self) -> str:
        return self._run.running_cell if self._run else ""

    async def run(self, request: RunRequest) -> AsyncIterator[ExecutionEvent]:
        """Queue a run and stream its events until it finishes.

        A kernel is started first, so that a limit on kernels reaches this
        caller as an error rather than as an event.
        """
        await self._ensure_kernel()
        async with self._hub.subscribe(self.notebook_id) as subscription:
            self.submit(request)
            while True:
                item = await subscription.next()
                if isinstance(item, Lagged):
                    raise WatcherTooSlow(self.notebook_id)
                event = item.event
                if not request.run_id or event.run_id != request.run_id:
                    continue
                yield event
                if event.HasField("run_finished"):
                    return

    def submit(self, request: RunRequest) -> None:
        """Queue a run without waiting for it (its events go to watchers)."""
        self._queue.append(request)
        if self._runner is None:
            self._runner = asyncio.create_task(self._run_queued())

    def has_run(self, cell_ids: Iterable[str]) -> bool:
        """True if any of these cells has run in the current kernel."""
        return any(CellId(cell_id) in self._ran for cell_id in cell_ids)

    async def watch(self) -> AsyncIterator[ExecutionEvent]:
        """Every event of every run of the notebook, from now on."""
        async with self._hub.subscribe(self.notebook_id) as subscription:
            while True:
                item = await subscription.next()
                if isinstance(item, Lagged):
                    raise WatcherTooSlow(self.notebook_id)
                yield item.event

    def interrupt(self) -> bool:
        """Stop the running cell and drop the rest of its run."""
        run, kernel = self._run, self.kernel
        if run is None or kernel is None or not run.running_cell:
            return False
        run.interrupted = True
        kernel.interrupt()
        cell = run.running_cell
        loop = asyncio.get_running_loop()
        loop.call_later(self._settings.interrupt_grace_s, self._escalate, run, cell)
        return True

    async def restart(self) -> None:
        """Replace the kernel with a fresh one."""
        await self._stop_kernel("restarted", KernelState.KERNEL_STATE_RESTARTING)
        await self._ensure_kernel()

    async def shutdown(self) -> None:
        """Stop the kernel; the next run starts a new one."""
        await self._stop_kernel("shut down", KernelState.KERNEL_STATE_DEAD)

    # -- the run loop --------------------------------------------------------

    async def _run_queued(self) -> None:
        try:
            while self._queue:
                requests, self._queue = self._queue, []
                run_id = uuid.uuid4().hex[:16]
                for request in requests:
                    request.run_id = run_id
                    request.assigned.set()
                await self._execute(run_id, merge(requests))
        finally:
            self._runner = None
            self.last_activity = time.time()

    async def _execute(self, run_id: str, merged: MergedRun) -> None:
        self._run = run = RunState(run_id)
        try:
            status = await self._execute_plan(run, merged)
        except Exception:
            logger.exception("run %s of notebook %s failed", run_id, self.notebook_id)
            status = Status.CELL_STATUS_ERROR
        finally:
            self._run = None
        self._emit(run_id, events.run_finished(status))

    async def _execute_plan(self, run: RunState, merged: MergedRun) -> Status.ValueType:
        notebook = merged.notebook
        cells = {CellId(cell.id): cell for cell in notebook.cells}
        old_graph, graph = self._graph, graph_of(notebook)
        self._graph = graph
        requested = set(merged.cells)
        if merged.run_all_stale:
            requested |= {c for c, cell in cells.items() if self._is_stale(c, cell)}
        try:
            kernel = await self._ensure_kernel(run.run_id)
        except ServiceError as error:
            dead = KernelState.KERNEL_STATE_DEAD
            self._emit(run.run_id, events.kernel_state(dead, str(error)))
            return Status.CELL_STATUS_ERROR
        requested |= await self._forget_deleted(kernel, old_graph, cells)
        runnable = [c for c, cell in cells.items() if cell.type in _RUNNABLE_TYPES]
        plan = plan_run(
            graph, requested, graph.errors(), ran=self._ran.keys(), runnable=runnable
        )
        self._emit(
            run.run_id,
            events.run_started(
                [c for c in plan.order if c not in plan.skipped], list(plan.skipped)
            ),
        )
        failed: dict[CellId, CellId] = {}
        status: Status.ValueType = Status.CELL_STATUS_SUCCESS
        for position, cell_id in enumerate(plan.order):
            if run.interrupted:
                self._not_run(run, plan.order[position:])
                return Status.CELL_STATUS_INTERRUPTED
            result = notebook_pb2.CellResult()
            origin = blocked_by(graph, cell_id, failed)
            if cell_id in plan.skipped:
                result.status = Status.CELL_STATUS_ERROR
                result.error.CopyFrom(
                    events.error("AnalysisError", plan.skipped[cell_id].message)
                )
            elif origin is not None:
                result.status = Status.CELL_STATUS_BLOCKED
                result.blocked_by_cell_id = origin
            else:
                try:
                    result = await self._run_cell(
                        run, kernel, cells[cell_id], graph, merged.database_url
                    )
                except _RunAborted as aborted:
                    self._finish(run, cell_id, aborted.result)
                    self._not_run(run, plan.order[position + 1 :])
                    return aborted.result.status
            if result.status != Status.CELL_STATUS_SUCCESS:
                failed[cell_id] = origin or cell_id
                status = Status.CELL_STATUS_ERROR
            if result.status == Status.CELL_STATUS_INTERRUPTED:
                status = Status.CELL_STATUS_INTERRUPTED
            self._finish(run, cell_id, result)
        return status

    async def _run_cell(
        self,
        run: RunState,
        kernel: KernelProcess,
        cell: notebook_pb2.Cell,
        graph: DependencyGraph,
        database_url: str,
    ) -> notebook_pb2.CellResult:
        cell_id = CellId(cell.id)
        writes = graph.analysis(cell_id).writes
        delete = sorted(self._ran.get(cell_id, frozenset()) | writes)
        self.execution_count += 1
        request = kernel_pb2.ExecuteRequest(
            cell_id=cell_id,
            cell_type=cell.type,
            code=cell.code,
            result_name=cell.result_name,
            delete_names=delete,
            database_url=database_url,
            execution_count=self.execution_count,
            output_limit_bytes=self._settings.output_limit_bytes,
        )
        # Recorded before running: a cell that fails half-way may still have
        # bound some of its names, and they must go before its next run.
        self._ran[cell_id] = writes
        self._ran_code[cell_id] = cell.code
        result = notebook_pb2.CellResult(execution_count=self.execution_count)
        result.start_time.GetCurrentTime()
        started = time.monotonic()
        collector = CellCollector(self._settings.output_limit_bytes)
        run.running_cell = cell_id
        self.state = KernelState.KERNEL_STATE_BUSY
        self._emit(run.run_id, events.cell_started(cell_id, self.execution_count))
        timeout = self._arm_timeout(run, cell_id)
        try:
            async for event in kernel.execute(request):
                self._forward(run, cell_id, event, collector, result)
        except KernelDied as died:
            result.status, message = self._death_status(run, died)
            result.error.CopyFrom(events.error("KernelDied", message))
            self._lost_kernel(kernel, run.run_id, died.reason)
            collector.fill(result)
            result.duration.FromNanoseconds(int((time.monotonic() - started) * 1e9))
            raise _RunAborted(result) from died
        finally:
            if timeout is not None:
                timeout.cancel()
            run.running_cell = ""
            if self.state == KernelState.KERNEL_STATE_BUSY:
                self.state = KernelState.KERNEL_STATE_IDLE
            self.last_activity = time.time()
        collector.fill(result)
        if not result.HasField("duration"):
            result.duration.FromNanoseconds(int((time.monotonic() - started) * 1e9))
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
            collector.add_chunk(event.stream_chunk)
            self._emit(run.run_id, events.stream_chunk(cell_id, event.stream_chunk))
        elif kind == "output":
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

    def _finish(
        self, run: RunState, cell_id: CellId, result: notebook_pb2.CellResult
    ) -> None:
        self._recorder.record(self.owner, self.notebook_id, cell_id, result)
        self._emit(run.run_id, events.cell_finished(cell_id, result))

    def _not_run(self, run: RunState, cell_ids: tuple[CellId, ...]) -> None:
        """Cells a stopped run will not reach: told, but nothing is stored."""
        for cell_id in cell_ids:
            result = notebook_pb2.CellResult(status=Status.CELL_STATUS_INTERRUPTED)
            self._emit(run.run_id, events.cell_finished(cell_id, result))

    # -- kernels -------------------------------------------------------------

    async def _ensure_kernel(self, run_id: str = "") -> KernelProcess:
        async with self._kernel_lock:
            kernel = self.kernel
            if kernel is not None and kernel.alive:
                return kernel
            self.state = KernelState.KERNEL_STATE_STARTING
            try:
                kernel = await self._spawn()
            except BaseException:
                self.state = KernelState.KERNEL_STATE_DEAD
                raise
            self.kernel = kernel
            self._ran.clear()
            self._ran_code.clear()
            self.execution_count = 0
            self.state = KernelState.KERNEL_STATE_IDLE
            self.last_activity = time.time()
            self._emit(run_id, events.kernel_state(self.state, "started"))
            return kernel

    async def _stop_kernel(self, why: str, state: KernelState.ValueType) -> None:
        async with self._kernel_lock:
            kernel = self.kernel
            if self._run is not None:
                self._run.stopping_kernel = True
                self._run.interrupted = True
            self.kernel = None
            self._ran.clear()
            self._ran_code.clear()
            self.state = state
            if kernel is not None:
                await kernel.shutdown(self._settings.shutdown_timeout_s)
            self.state = KernelState.KERNEL_STATE_DEAD
            self._emit("", events.kernel_state(state, why))

    def _lost_kernel(self, kernel: KernelProcess, run_id: str, reason: str) -> None:
        if self.kernel is not kernel:
            return  # already replaced (a restart) or stopped on purpose
        self.kernel = None
        self._ran.clear()
        self._ran_code.clear()
        self.state = KernelState.KERNEL_STATE_DEAD
        self._emit(run_id, events.kernel_state(self.state, reason))

    def _death_status(
        self, run: RunState, died: KernelDied
    ) -> tuple[Status.ValueType, str]:
        if run.stopping_kernel:
            return Status.CELL_STATUS_INTERRUPTED, "the kernel was stopped"
        if run.escalated:
            return (
                Status.CELL_STATUS_INTERRUPTED,
                "the cell ignored the interrupt, so its kernel was restarted",
            )
        return Status.CELL_STATUS_ERROR, died.reason

    def _escalate(self, run: RunState, cell_id: str) -> None:
        kernel = self.kernel
        if self._run is run and run.running_cell == cell_id and kernel is not None:
            logger.warning(
                "cell %s of notebook %s ignored SIGINT for %.1f s; killing its kernel",
                cell_id,
                self.notebook_id,
                self._settings.interrupt_grace_s,
            )
            run.escalated = True
            kernel.kill()

    def _arm_timeout(self, run: RunState, cell_id: str) -> asyncio.TimerHandle | None:
        limit = self._settings.cell_timeout_s
        if limit <= 0:
            return None

        def expire() -> None:
            if self._run is run and run.running_cell == cell_id:
                logger.info("cell %s passed its %.1f s limit", cell_id, limit)
                self.interrupt()

        return asyncio.get_running_loop().call_later(limit, expire)

    async def _forget_deleted(
        self,
        kernel: KernelProcess,
        old_graph: DependencyGraph,
        cells: dict[CellId, notebook_pb2.Cell],
    ) -> set[CellId]:
        """Delete the names of cells gone from the notebook; return what
        depended on them and is still there, to re-run."""
        gone = [cell_id for cell_id in self._ran if cell_id not in cells]
        if not gone:
            return set()
        names = sorted(set().union(*(self._ran.pop(cell_id) for cell_id in gone)))
        for cell_id in gone:
            self._ran_code.pop(cell_id, None)
        await kernel.delete_names(names)
        orphans = old_graph.descendants(c for c in gone if c in old_graph)
        return {cell_id for cell_id in orphans if cell_id in cells}

    def _is_stale(self, cell_id: CellId, cell: notebook_pb2.Cell) -> bool:
        return self._ran_code.get(cell_id) != cell.code

    # -- events --------------------------------------------------------------

    def _emit(self, run_id: str, event: ExecutionEvent) -> None:
        self._sequence += 1
        event.notebook_id = self.notebook_id
        event.run_id = run_id
        event.sequence = self._sequence
        self._hub.publish(self.notebook_id, self._sequence, event)

    def describe(self) -> execution_pb2.Kernel:
        """The kernel as GetKernel and ListKernels show it."""
        kernel = self.kernel
        message = execution_pb2.Kernel(
            notebook_id=self.notebook_id,
            owner=self.owner,
            state=self.state,
            execution_count=self.execution_count,
            running_cell_id=self.running_cell,
        )
        message.last_activity_time.FromSeconds(int(self.last_activity))
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
