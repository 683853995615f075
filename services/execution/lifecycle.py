"""One notebook's kernel process: started on demand, stopped, lost, replaced.

`KernelLifecycle` owns at most one kernel. `ensure` starts one when there is
none (or it died); `stop` shuts it down on purpose (restart, shutdown, idle
reaping); `lost` notes that it died under a run. Each of these announces the
kernel's new state as an event, and a kernel that is new or gone empties the
ledger of what the kernel holds, since its namespace went with it.

Interrupts follow DESIGN §3: SIGINT stops the running cell; a kernel that
ignores SIGINT for `interrupt_grace_s` is killed (`escalate`), and the next
run starts a fresh one. A cell over its time limit is interrupted the same
way (`arm_timeout`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Protocol

from reflow.execution.v1 import execution_pb2, kernel_pb2
from reflow.notebook.v1 import notebook_pb2
from services.execution import events, metrics

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

    from services.execution.config import KernelSettings
    from services.execution.kernel.process import KernelDied
    from services.execution.ledger import KernelLedger
    from services.execution.runs import RunState

logger = logging.getLogger(__name__)

KernelState = execution_pb2.KernelState
Status = notebook_pb2.CellStatus


class Kernel(Protocol):
    """What the service needs of a kernel process (`KernelProcess`, or a
    fake in tests)."""

    pid: int
    start_time: float

    @property
    def alive(self) -> bool: ...

    def execute(
        self, request: kernel_pb2.ExecuteRequest
    ) -> AsyncIterator[kernel_pb2.KernelEvent]: ...

    async def delete_names(self, names: Sequence[str]) -> None: ...

    async def query(
        self, request: kernel_pb2.KernelRequest
    ) -> kernel_pb2.KernelEvent: ...

    async def workdir(
        self, request: kernel_pb2.WorkdirRequest
    ) -> kernel_pb2.WorkdirDone: ...

    def interrupt(self) -> None: ...

    def kill(self) -> None: ...

    async def shutdown(self, timeout_s: float = 5.0) -> str: ...

    def memory_bytes(self) -> int: ...


class KernelLifecycle:
    """The notebook's kernel process and its state."""

    def __init__(
        self,
        spawn: Callable[[], Awaitable[Kernel]],
        settings: KernelSettings,
        ledger: KernelLedger,
        emit: Callable[[str, execution_pb2.ExecutionEvent], None],
    ) -> None:
        self._spawn = spawn
        self._settings = settings
        self._ledger = ledger
        self._emit = emit
        self._lock = asyncio.Lock()
        self.kernel: Kernel | None = None
        self.state: KernelState.ValueType = KernelState.KERNEL_STATE_DEAD
        self.execution_count = 0
        self.last_activity = time.time()
        # Said with the next "started" event: why the kernel is a new one.
        self.next_start_note = ""
        self._unannounced = ""

    async def ensure(self, run_id: str = "") -> Kernel:
        """The live kernel, started first if there is none."""
        async with self._lock:
            kernel = self.kernel
            if kernel is not None and kernel.alive:
                self._announce(run_id)
                return kernel
            if kernel is not None:
                # It died between runs, with nobody there to see it.
                _count_death()
            self.state = KernelState.KERNEL_STATE_STARTING
            try:
                kernel = await self._spawn()
            except BaseException:
                self.kernel = None
                self.state = KernelState.KERNEL_STATE_DEAD
                raise
            self.kernel = kernel
            metrics.KERNELS_STARTED.inc()
            metrics.KERNELS_LIVE.inc()
            self._ledger.clear()
            self.execution_count = 0
            self.state = KernelState.KERNEL_STATE_IDLE
            self.last_activity = time.time()
            if self.next_start_note:
                self._unannounced = f"started; {self.next_start_note}"
                self.next_start_note = ""
                self._emit(run_id, events.kernel_state(self.state, self._unannounced))
                self._announce(run_id)
            else:
                self._emit(run_id, events.kernel_state(self.state, "started"))
            return kernel

    def _announce(self, run_id: str) -> None:
        # A kernel started for a run is started before the run has an id;
        # why it is a new one is said again as the run's own event.
        if run_id and self._unannounced:
            self._emit(run_id, events.kernel_state(self.state, self._unannounced))
            self._unannounced = ""

    async def stop(
        self, why: str, state: KernelState.ValueType, run: RunState | None
    ) -> None:
        """Shut the kernel down on purpose; a run in progress is dropped."""
        async with self._lock:
            kernel = self.kernel
            if run is not None:
                run.stopping_kernel = True
                run.interrupted = True
            self.kernel = None
            self._ledger.clear()
            self.state = state
            if kernel is not None:
                metrics.KERNELS_LIVE.dec()
                await kernel.shutdown(self._settings.shutdown_timeout_s)
            self.state = KernelState.KERNEL_STATE_DEAD
            self._emit("", events.kernel_state(state, why))

    def lost(self, kernel: Kernel, run_id: str, reason: str) -> None:
        """The kernel died under a run."""
        if self.kernel is not kernel:
            return  # already replaced (a restart) or stopped on purpose
        _count_death()
        self.kernel = None
        self._ledger.clear()
        self.state = KernelState.KERNEL_STATE_DEAD
        self._emit(run_id, events.kernel_state(self.state, reason))

    def begin_cell(self) -> int:
        """A cell starts running; its execution count."""
        self.execution_count += 1
        self.state = KernelState.KERNEL_STATE_BUSY
        return self.execution_count

    def end_cell(self) -> None:
        if self.state == KernelState.KERNEL_STATE_BUSY:
            self.state = KernelState.KERNEL_STATE_IDLE
        self.last_activity = time.time()

    @staticmethod
    def death_status(run: RunState, died: KernelDied) -> tuple[Status.ValueType, str]:
        """How a cell whose kernel died ends, and why."""
        if run.stopping_kernel:
            return Status.CELL_STATUS_INTERRUPTED, "the kernel was stopped"
        if run.escalated:
            return (
                Status.CELL_STATUS_INTERRUPTED,
                "the cell ignored the interrupt, so its kernel was restarted",
            )
        return Status.CELL_STATUS_ERROR, died.reason

    def interrupt(self, run: RunState, current: Callable[[], RunState | None]) -> bool:
        """SIGINT the running cell of `run`; kill the kernel if it ignores it."""
        kernel = self.kernel
        if kernel is None or not run.running_cell:
            return False
        run.interrupted = True
        kernel.interrupt()
        cell = run.running_cell
        loop = asyncio.get_running_loop()
        loop.call_later(
            self._settings.interrupt_grace_s, self._escalate, run, cell, current
        )
        return True

    def _escalate(
        self, run: RunState, cell_id: str, current: Callable[[], RunState | None]
    ) -> None:
        kernel = self.kernel
        if current() is run and run.running_cell == cell_id and kernel is not None:
            logger.warning(
                "cell %s ignored SIGINT for %.1f s; killing its kernel",
                cell_id,
                self._settings.interrupt_grace_s,
            )
            run.escalated = True
            kernel.kill()

    def arm_timeout(
        self, run: RunState, cell_id: str, current: Callable[[], RunState | None]
    ) -> asyncio.TimerHandle | None:
        """Interrupt the cell once it passes the per-cell time limit."""
        limit = self._settings.cell_timeout_s
        if limit <= 0:
            return None

        def expire() -> None:
            if current() is run and run.running_cell == cell_id:
                logger.info("cell %s passed its %.1f s limit", cell_id, limit)
                self.interrupt(run, current)

        return asyncio.get_running_loop().call_later(limit, expire)


def _count_death() -> None:
    metrics.KERNELS_DIED.inc()
    metrics.KERNELS_LIVE.dec()
