"""All sessions of this service: lookup, kernel limits, idle reaping."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from services.execution.errors import KernelNotFound, TooManyKernels
from services.execution.session import Session
from services.shared.fanout import EventHub

if TYPE_CHECKING:
    from reflow.execution.v1 import execution_pb2
    from services.execution.config import KernelSettings
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
    ) -> None:
        self._launcher = launcher
        self._follower = follower
        self._settings = settings
        self._recorder = recorder
        self._sessions: dict[str, Session] = {}
        self._hub: EventHub[execution_pb2.ExecutionEvent] = EventHub(
            history=1, queue_size=4096
        )
        self._reaper: asyncio.Task[None] | None = None

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
            )
            self._sessions[notebook_id] = session
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_forever())
        return session

    def existing(self, owner: str, notebook_id: str) -> Session:
        """The notebook's session, or KernelNotFound (also for a foreign one)."""
        session = self._sessions.get(notebook_id)
        if session is None or session.owner != owner:
            raise KernelNotFound(notebook_id)
        return session

    def of_owner(self, owner: str) -> list[Session]:
        """The owner's sessions that have a kernel, by notebook id."""
        return sorted(
            (s for s in self._sessions.values() if s.owner == owner and s.kernel),
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
        live = [s for s in self._sessions.values() if s.kernel and s.kernel.alive]
        if len(live) >= self._settings.max_kernels:
            raise TooManyKernels("this service", self._settings.max_kernels)
        mine = sum(1 for s in live if s.owner == owner)
        if mine >= self._settings.max_kernels_per_user:
            raise TooManyKernels("you", self._settings.max_kernels_per_user)
        limit = self._settings.memory_limit_bytes or None
        kernel = await self._launcher.spawn(limit)
        if self._follower is not None:
            self._follower.follow(self._sessions[notebook_id])
        return kernel

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
                if session.kernel is None and self._follower is not None:
                    self._follower.forget(session.notebook_id)
