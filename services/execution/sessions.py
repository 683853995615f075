"""All sessions of this service: lookup, kernel limits, idle reaping."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING

from services.execution import metrics
from services.execution.errors import KernelNotFound, TooManyKernels
from services.execution.session import Session
from services.shared.fanout import EventHub

if TYPE_CHECKING:
    from reflow.execution.v1 import execution_pb2
    from services.execution.config import KernelSettings
    from services.execution.files import WorkdirSync
    from services.execution.follow import ChangeFollower
    from services.execution.kernel.launcher import KernelLauncher
    from services.execution.kernel.process import KernelProcess
    from services.execution.recorder import ResultRecorder

logger = logging.getLogger(__name__)


class SessionManager:
    """Maps notebooks to sessions; enforces the kernel limits."""

    def __init__(
        self,
        launcher: KernelLauncher,
        settings: KernelSettings,
        recorder: ResultRecorder,
        follower: ChangeFollower | None = None,
        workdirs: WorkdirSync | None = None,
    ) -> None:
        self._launcher = launcher
        self._workdirs = workdirs
        self._follower = follower
        self._settings = settings
        self._recorder = recorder
        self._sessions: dict[str, Session] = {}
        self._hub: EventHub[execution_pb2.ExecutionEvent] = EventHub(
            history=1, queue_size=4096
        )
        self._reaper: asyncio.Task[None] | None = None
        self._making_room = asyncio.Lock()
        # Owners of kernels being started: counted as live while they start.
        self._starting: list[str] = []

    def session(self, owner: str, notebook_id: str) -> Session:
        """The notebook's session, created on first use.

        The caller has already read the notebook as `owner` from the
        notebook service, so ownership is settled; a session of another
        owner can only mean the notebook id was reused, and is replaced.
        """
        session = self._sessions.get(notebook_id)
        if session is None or session.owner != owner:
            session = Session(
                notebook_id,
                owner,
                lambda: self._spawn(owner, notebook_id),
                self._settings,
                self._recorder,
                self._hub,
                self._workdirs.for_notebook(owner, notebook_id)
                if self._workdirs
                else None,
            )
            self._sessions[notebook_id] = session
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_forever())
        return session

    def live(self, owner: str, notebook_id: str) -> Session | None:
        """The owner's session of the notebook if it has a kernel; else None."""
        session = self._sessions.get(notebook_id)
        if session is None or session.owner != owner or session.kernel is None:
            return None
        return session

    def existing(self, owner: str, notebook_id: str) -> Session:
        """The notebook's session, or KernelNotFound (also for a foreign one)."""
        session = self._sessions.get(notebook_id)
        if session is None or session.owner != owner:
            raise KernelNotFound(notebook_id)
        return session

    def of_owner(self, owner: str) -> list[Session]:
        """The owner's sessions that have a live kernel, by notebook id."""
        return sorted(
            (s for s in self._live() if s.owner == owner),
            key=lambda s: s.notebook_id,
        )

    async def close(self) -> None:
        """Stop every kernel."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        if self._follower is not None:
            await self._follower.close()
        await asyncio.gather(
            *(session.shutdown() for session in self._sessions.values()),
            return_exceptions=True,
        )
        self._sessions.clear()

    async def _spawn(self, owner: str, notebook_id: str) -> KernelProcess:
        # One decision at a time, so two runs cannot both count one free
        # place or both evict one kernel; the starts themselves overlap.
        async with self._making_room:
            await self._make_room(owner, notebook_id)
            self._starting.append(owner)
        try:
            limit = self._settings.memory_limit_bytes or None
            kernel = await self._launcher.spawn(limit)
        finally:
            self._starting.remove(owner)
        if self._follower is not None:
            self._follower.follow(self._sessions[notebook_id])
        return kernel

    async def _make_room(self, owner: str, notebook_id: str) -> None:
        """Evict an idle kernel if a limit is reached; TooManyKernels if none is.

        At a user's own limit, their longest-idle kernel goes. At the
        service's limit, the longest-idle kernel of anyone goes, taken first
        from users holding more than an even share, so one user cannot keep
        everyone else out. Only when every candidate is busy is the run
        refused, with a hint to retry.
        """
        settings = self._settings
        live = [s for s in self._live() if s.notebook_id != notebook_id]
        mine = [s for s in live if s.owner == owner]
        starting_mine = self._starting.count(owner)
        if len(mine) + starting_mine >= settings.max_kernels_per_user:
            victim = _longest_idle(mine)
            if victim is None:
                raise TooManyKernels("you", settings.max_kernels_per_user)
        elif len(live) + len(self._starting) >= settings.max_kernels:
            held = Counter(s.owner for s in live) + Counter(self._starting)
            share = max(1, settings.max_kernels // len(held | {owner: 1}))
            over = [s for s in live if held[s.owner] > share]
            victim = _longest_idle(over) or _longest_idle(live)
            if victim is None:
                raise TooManyKernels("this service", settings.max_kernels)
        else:
            return
        idle_s = time.time() - victim.last_activity
        logger.info(
            "evicting the kernel of notebook %s (idle %.0f s) for notebook %s",
            victim.notebook_id,
            idle_s,
            notebook_id,
        )
        await victim.evict(idle_s)
        metrics.KERNELS_EVICTED.labels("limit").inc()

    def _live(self) -> list[Session]:
        return [s for s in self._sessions.values() if s.kernel and s.kernel.alive]

    async def _reap_forever(self) -> None:
        idle_s = self._settings.idle_timeout_s
        period = max(min(idle_s / 4, 30.0), 0.05)
        while True:
            await asyncio.sleep(period)
            now = time.time()
            for session in list(self._sessions.values()):
                idle = not session.busy and now - session.last_activity > idle_s
                if session.kernel is not None and idle:
                    logger.info(
                        "stopping the kernel of notebook %s: idle for %.0f s",
                        session.notebook_id,
                        now - session.last_activity,
                    )
                    await session.shutdown()
                    metrics.KERNELS_EVICTED.labels("idle").inc()
                if session.kernel is None and self._follower is not None:
                    self._follower.forget(session.notebook_id)


def _longest_idle(sessions: list[Session]) -> Session | None:
    idle = [s for s in sessions if not s.busy]
    return min(idle, key=lambda s: s.last_activity, default=None)
