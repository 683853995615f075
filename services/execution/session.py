"""One notebook's session: its queue of runs, and who hears about them.

A Session puts together the notebook's kernel (`lifecycle.py`), the record
of what that kernel holds (`ledger.py`) and the run loop (`runner.py`).
Runs of the notebook happen one at a time, in a task of the session's own
(`_run_queued`), so a caller that disconnects does not stop a run that
collaborators may be watching. Every event of a run is published on the
execution hub under the notebook's id; RunCells callers and WatchExecution
watchers alike read from there, each with a bounded queue.

Read your writes: a run's `run_finished` is published only once the
notebook service has stored the run's results (or the recorder gave up
waiting), so a client that reads the notebook after its RunCells stream
ended sees what the stream reported.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING

from reflow.execution.v1 import execution_pb2
from reflow.notebook.v1 import notebook_pb2
from services.execution import events, metrics
from services.execution.convert import kernel_to_proto
from services.execution.errors import WatcherTooSlow
from services.execution.followed import FollowedNotebook
from services.execution.ledger import KernelLedger
from services.execution.lifecycle import KernelLifecycle
from services.execution.runner import Runner
from services.execution.runs import MergedRun, RunRequest, RunState, merge
from services.shared.dataflow import CellId
from services.shared.fanout import Lagged

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

    from services.execution.config import KernelSettings
    from services.execution.files import NotebookFiles
    from services.execution.lifecycle import Kernel
    from services.execution.recorder import ResultRecorder
    from services.shared.fanout import EventHub

logger = logging.getLogger(__name__)

ExecutionEvent = execution_pb2.ExecutionEvent
Status = notebook_pb2.CellStatus
KernelState = execution_pb2.KernelState

# How long the end of a run waits for its results to be stored.
RECORD_WAIT_S = 10.0


class Session:
    """A notebook's kernel and the runs on it."""

    def __init__(
        self,
        notebook_id: str,
        owner: str,
        spawn: Callable[[], Awaitable[Kernel]],
        settings: KernelSettings,
        recorder: ResultRecorder,
        hub: EventHub[ExecutionEvent],
        files: NotebookFiles | None = None,
    ) -> None:
        self.notebook_id = notebook_id
        self.owner = owner
        self._recorder = recorder
        self._hub = hub
        self._ledger = KernelLedger()
        self.lifecycle = KernelLifecycle(spawn, settings, self._ledger, self._emit)
        self._runner = Runner(
            self.lifecycle, self._ledger, settings, self._emit, self._record, files
        )
        self._queue: list[RunRequest] = []
        self._task: asyncio.Task[None] | None = None
        self._sequence = 0
        # Kept current by the change follower while the kernel lives.
        self.followed = FollowedNotebook()

    # -- public --------------------------------------------------------------

    @property
    def kernel(self) -> Kernel | None:
        return self.lifecycle.kernel

    @property
    def state(self) -> KernelState.ValueType:
        return self.lifecycle.state

    @property
    def last_activity(self) -> float:
        return self.lifecycle.last_activity

    @property
    def busy(self) -> bool:
        """True while a run is in progress or waiting."""
        return self._task is not None

    @property
    def running_cell(self) -> str:
        run = self._runner.current
        return run.running_cell if run else ""

    async def run(self, request: RunRequest) -> AsyncIterator[ExecutionEvent]:
        """Queue a run and stream its events until it finishes.

        A kernel is started first, so that a limit on kernels reaches this
        caller as an error rather than as an event.
        """
        await self.lifecycle.ensure()
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
        """Queue a run without waiting for it (its events go to watchers).

        Behind a run that is going on, each cell asked for is announced as
        queued at once (CellQueued, with no run id yet), so every watcher shows
        it waiting its turn.
        """
        self._queue.append(request)
        metrics.RUNS_QUEUED.inc()
        if self._task is None:
            self._task = asyncio.create_task(self._run_queued())
            return
        for cell_id in sorted(request.cells):
            self._emit("", events.cell_queued(cell_id))

    def has_run(self, cell_ids: Iterable[str]) -> bool:
        """True if any of these cells has run in the current kernel."""
        return any(self._ledger.has_run(CellId(cell_id)) for cell_id in cell_ids)

    def definers(self) -> dict[str, str]:
        """The cell that bound each global name in this kernel, by name."""
        return {
            name: cell_id
            for cell_id, entry in self._ledger.ran.items()
            for name in entry.names
        }

    @property
    def holding(self) -> bool:
        """True if cells wait for a conflict to be resolved or a cell enabled."""
        return self._ledger.holding

    async def watch(
        self, subscribed: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[ExecutionEvent]:
        """Every event of every run of the notebook, from now on; `subscribed`
        is awaited once nothing published from then on can be missed."""
        async with self._hub.subscribe(self.notebook_id) as subscription:
            if subscribed is not None:
                await subscribed()
            while True:
                item = await subscription.next()
                if isinstance(item, Lagged):
                    raise WatcherTooSlow(self.notebook_id)
                yield item.event

    def interrupt(self) -> bool:
        """Stop the running cell and drop the rest of its run."""
        run = self._runner.current
        if run is None:
            return False
        return self.lifecycle.interrupt(run, lambda: self._runner.current)

    async def restart(self) -> None:
        """Replace the kernel with a fresh one."""
        await self.lifecycle.stop(
            "restarted", KernelState.KERNEL_STATE_RESTARTING, self._runner.current
        )
        await self.lifecycle.ensure()

    async def shutdown(self) -> None:
        """Stop the kernel; the next run starts a new one."""
        await self.lifecycle.stop(
            "shut down", KernelState.KERNEL_STATE_DEAD, self._runner.current
        )

    async def evict(self, idle_s: float) -> None:
        """Stop an idle kernel to make room for another notebook's.

        The notebook keeps every stored output; its owner's next run starts
        a fresh kernel, and that run's events say why.
        """
        why = (
            f"stopped after {idle_s:.0f} s idle to make room for other notebooks "
            "(the service is at its kernel limit)"
        )
        await self.lifecycle.stop(why, KernelState.KERNEL_STATE_DEAD, None)
        self.lifecycle.next_start_note = (
            f"the previous kernel was {why}: its variables are gone, "
            "stored outputs are kept"
        )

    def describe(self) -> execution_pb2.Kernel:
        """The kernel as GetKernel and ListKernels show it."""
        return kernel_to_proto(
            self.notebook_id, self.owner, self.lifecycle, self.running_cell
        )

    # -- runs ----------------------------------------------------------------

    async def _run_queued(self) -> None:
        try:
            while self._queue:
                requests, self._queue = self._queue, []
                metrics.RUNS_QUEUED.dec(len(requests))
                run_id = uuid.uuid4().hex[:16]
                for request in requests:
                    request.run_id = run_id
                    request.assigned.set()
                with metrics.RUNS_RUNNING.track_inprogress():
                    await self._execute(run_id, merge(requests))
        finally:
            self._task = None
            self.lifecycle.last_activity = time.time()

    async def _execute(self, run_id: str, merged: MergedRun) -> None:
        try:
            status = await self._runner.execute(RunState(run_id), merged)
        except Exception:
            logger.exception("run %s of notebook %s failed", run_id, self.notebook_id)
            status = Status.CELL_STATUS_ERROR
        try:
            await self._recorder.settled(self.notebook_id, RECORD_WAIT_S)
        except TimeoutError:
            logger.warning(
                "results of run %s of notebook %s are not stored yet",
                run_id,
                self.notebook_id,
            )
        self._emit(run_id, events.run_finished(status))

    def _record(self, cell_id: CellId, result: notebook_pb2.CellResult) -> None:
        self._recorder.record(self.owner, self.notebook_id, cell_id, result)

    def _emit(self, run_id: str, event: ExecutionEvent) -> None:
        self._sequence += 1
        event.notebook_id = self.notebook_id
        event.run_id = run_id
        event.sequence = self._sequence
        self._hub.publish(self.notebook_id, self._sequence, event)
