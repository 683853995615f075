"""Starting kernels: forked from the warm zygote, or as plain subprocesses.

See ``process.py`` for a kernel's lifecycle once started, and ``zygote.py``
for the fork server.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import resource
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from services.execution.kernel.environment import kernel_environment
from services.execution.kernel.process import KernelDied, KernelProcess
from services.execution.kernel.zygote import WORKER_MODULE, describe_exit
from services.execution.kernel.zygote_client import ZygoteClient, ZygoteLost
from services.shared.errors import Unavailable

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from reflow.execution.v1 import zygote_pb2
    from services.execution.kernel.sandbox import SandboxConfig

logger = logging.getLogger(__name__)

# The StreamReader buffers up to twice this before it stops reading the
# socket; big enough that a large output frame is not read in tiny steps.
_STREAM_LIMIT: Final = 1024 * 1024
_ORPHAN_EXIT: Final = "exited (status unknown: the zygote that started it had died)"


async def _open_channel() -> tuple[
    asyncio.StreamReader, asyncio.StreamWriter, socket.socket
]:
    """A socket pair: the service's end as asyncio streams, and the kernel's end."""
    ours, theirs = socket.socketpair()
    try:
        reader, writer = await asyncio.open_unix_connection(
            sock=ours, limit=_STREAM_LIMIT
        )
    except BaseException:
        ours.close()
        theirs.close()
        raise
    return reader, writer, theirs


@dataclass
class _PendingSpawn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    future: asyncio.Future[KernelProcess] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class KernelLauncher:
    """Starts kernels: forked from a warm zygote, or as plain subprocesses.

    ``worker_module`` is the module a kernel runs (its ``prepare_process()``
    and ``serve(sock)`` in a forked kernel, ``python -m worker_module --fd N
    *worker_args`` in a subprocess); tests point it at misbehaving fakes.
    """

    def __init__(
        self,
        *,
        use_zygote: bool = True,
        worker_module: str = WORKER_MODULE,
        worker_args: Sequence[str] = (),
        start_timeout_s: float = 30.0,
        zygote_start_timeout_s: float = 120.0,
        sandbox: SandboxConfig | None = None,
    ) -> None:
        if sandbox is not None and not use_zygote:
            raise ValueError(
                "kernels started as subprocesses are not confined: "
                "EXECUTION_USE_ZYGOTE=false needs EXECUTION_SANDBOX=off"
            )
        self.use_zygote = use_zygote
        self.sandbox = sandbox
        self._worker_module = worker_module
        self._worker_args = tuple(worker_args)
        self._start_timeout_s = start_timeout_s
        self._zygote_start_timeout_s = zygote_start_timeout_s
        self._zygote: ZygoteClient | None = None
        self._zygote_lock = asyncio.Lock()
        self._request_ids = itertools.count(1)
        self._pending: dict[int, _PendingSpawn] = {}
        self._kernels: dict[int, KernelProcess] = {}
        self._forked: set[int] = set()  # pids of the current zygote's kernels
        self._orphan_fds: dict[int, int] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._spawned: set[KernelProcess] = set()
        self._closed = False

    async def __aenter__(self) -> KernelLauncher:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def zygote_pid(self) -> int | None:
        """The running zygote's pid, if there is one."""
        zygote = self._zygote
        return zygote.process.pid if zygote is not None and zygote.alive else None

    @property
    def kernels(self) -> list[KernelProcess]:
        """The kernels started here that have not exited."""
        return list(self._kernels.values())

    async def start(self) -> None:
        """Warm up: start the zygote now rather than on the first spawn."""
        if self.use_zygote:
            await self._running_zygote()

    async def spawn(self, memory_limit_bytes: int | None = None) -> KernelProcess:
        """Start a kernel and wait until it is ready; 0 or None means no limit."""
        if self._closed:
            raise Unavailable("the kernel launcher is closed")
        started = time.perf_counter()
        limit = memory_limit_bytes or 0
        kernel = await (self._fork(limit) if self.use_zygote else self._exec(limit))
        try:
            await kernel._wait_ready(self._start_timeout_s)
        except BaseException:
            kernel.kill()
            raise
        logger.info(
            "kernel %d ready in %.1f ms (%s)",
            kernel.pid,
            (time.perf_counter() - started) * 1e3,
            "zygote" if self.use_zygote else "subprocess",
        )
        if self.sandbox is None:
            logger.warning(
                "kernel %d runs unconfined: its code can read the service's "
                "files and reach other users' kernels (EXECUTION_SANDBOX=off)",
                kernel.pid,
            )
        return kernel

    async def close(self, timeout_s: float = 5.0) -> None:
        """Kill every kernel and the zygote, and wait for them to exit."""
        self._closed = True
        kernels = list(self._kernels.values())
        for kernel in kernels:
            kernel.kill()
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*(kernel.wait_exited() for kernel in kernels))
        except TimeoutError:
            logger.warning("kernels %s did not exit", [k.pid for k in kernels])
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*(k._close_channel() for k in self._spawned))
        self._spawned.clear()
        if self._zygote is not None:
            await self._zygote.close(timeout_s)
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        for pid in list(self._orphan_fds):
            self._stop_watching_orphan(pid)

    # -- forked from the zygote ---------------------------------------------

    async def _fork(self, memory_limit_bytes: int) -> KernelProcess:
        # A zygote that died between two spawns is noticed only when the
        # request fails; one retry with a fresh zygote covers that.
        for attempt in (1, 2):
            zygote = await self._running_zygote()
            try:
                return await self._fork_from(zygote, memory_limit_bytes)
            except ZygoteLost:
                if attempt == 2:
                    raise
                logger.warning("the kernel zygote died during a spawn; retrying")
        raise AssertionError("unreachable")

    async def _fork_from(
        self, zygote: ZygoteClient, memory_limit_bytes: int
    ) -> KernelProcess:
        reader, writer, theirs = await _open_channel()
        request_id = next(self._request_ids)
        pending = _PendingSpawn(reader, writer)
        self._pending[request_id] = pending
        try:
            async with asyncio.timeout(self._start_timeout_s):
                await zygote.send_spawn(request_id, memory_limit_bytes, theirs.fileno())
                theirs.close()  # the zygote holds its own copy now
                return await pending.future
        except BaseException:
            writer.close()
            # Left pending and cancelled: if the zygote forks the kernel
            # anyway, _on_spawned kills it.
            pending.future.cancel()
            raise
        finally:
            theirs.close()

    async def _running_zygote(self) -> ZygoteClient:
        async with self._zygote_lock:
            if self._closed:
                raise Unavailable("the kernel launcher is closed")
            if self._zygote is None or not self._zygote.alive:
                if self._zygote is not None:
                    logger.warning("restarting the kernel zygote")
                self._zygote = await ZygoteClient.start(
                    self._worker_module,
                    self._zygote_start_timeout_s,
                    self._on_zygote_event,
                    self._on_zygote_lost,
                    self.sandbox,
                )
            return self._zygote

    def _on_zygote_event(self, event: zygote_pb2.ZygoteEvent) -> None:
        kind = event.WhichOneof("event")
        if kind == "kernel_spawned":
            self._on_spawned(event.kernel_spawned.request_id, event.kernel_spawned.pid)
        elif kind == "spawn_failed":
            pending = self._pending.pop(event.spawn_failed.request_id, None)
            if pending is not None and not pending.future.done():
                reason = f"it could not be started ({event.spawn_failed.message})"
                pending.future.set_exception(KernelDied(reason))
        elif kind == "kernel_exited":
            exited = event.kernel_exited
            reason = describe_exit(exited.exit_code, exited.signal)
            if exited.detail:
                reason = f"{reason}: {exited.detail}"
            self._on_exit(exited.pid, reason)

    def _on_spawned(self, request_id: int, pid: int) -> None:
        # The KernelProcess is made here, not in spawn(), so that an exit
        # reported right after this event always finds it.
        pending = self._pending.pop(request_id, None)
        if pending is None:
            logger.error("the zygote started kernel %d that nobody asked for", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return
        kernel = self._adopt(KernelProcess(pid, pending.reader, pending.writer))
        self._forked.add(pid)
        if pending.future.done():  # the spawn was cancelled meanwhile
            kernel.kill()
        else:
            pending.future.set_result(kernel)

    def _on_zygote_lost(self, zygote: ZygoteClient) -> None:
        if zygote is not self._zygote:
            return
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(ZygoteLost())
        self._pending.clear()
        if not self._closed:
            logger.warning(
                "the kernel zygote exited; %d kernels continue without it",
                len(self._forked),
            )
        for pid in self._forked:
            self._watch_orphan(pid)
        self._forked.clear()

    def _adopt(self, kernel: KernelProcess) -> KernelProcess:
        self._kernels[kernel.pid] = kernel
        # Kept until close(), which closes every socket still open.
        self._spawned = {k for k in self._spawned if not k._channel_closed()}
        self._spawned.add(kernel)
        return kernel

    def _on_exit(self, pid: int, reason: str) -> None:
        self._forked.discard(pid)
        kernel = self._kernels.pop(pid, None)
        if kernel is not None:
            kernel._mark_exited(reason)

    def _watch_orphan(self, pid: int) -> None:
        """Learn of the exit of a kernel whose zygote died, through a pidfd."""
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._on_exit(pid, _ORPHAN_EXIT)
            return
        except (AttributeError, OSError) as error:
            # Without pidfds the kernel's socket still tells of its death.
            logger.warning("cannot watch orphaned kernel %d: %s", pid, error)
            return
        self._orphan_fds[pid] = pidfd
        asyncio.get_running_loop().add_reader(pidfd, self._orphan_exited, pid)

    def _orphan_exited(self, pid: int) -> None:
        self._stop_watching_orphan(pid)
        reason = _ORPHAN_EXIT
        # When the service is PID 1 (a container), orphans become its
        # children, and their real status is ours to collect.
        with contextlib.suppress(ChildProcessError):
            waited, status = os.waitpid(pid, os.WNOHANG)
            if waited:
                code = os.waitstatus_to_exitcode(status)
                reason = describe_exit(max(code, 0), max(-code, 0))
        self._on_exit(pid, reason)

    def _stop_watching_orphan(self, pid: int) -> None:
        pidfd = self._orphan_fds.pop(pid)
        asyncio.get_running_loop().remove_reader(pidfd)
        os.close(pidfd)

    # -- plain subprocesses ---------------------------------------------------

    async def _exec(self, memory_limit_bytes: int) -> KernelProcess:
        reader, writer, theirs = await _open_channel()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                self._worker_module,
                "--fd",
                str(theirs.fileno()),
                *self._worker_args,
                pass_fds=(theirs.fileno(),),
                env=kernel_environment(),
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            writer.close()
            raise
        finally:
            theirs.close()
        if memory_limit_bytes:
            # Set from outside rather than in a preexec_fn, which is unsafe
            # in a process with threads (the gRPC server has several). The
            # child is still importing; user code runs only after ready.
            with contextlib.suppress(ProcessLookupError):
                limit = (memory_limit_bytes, memory_limit_bytes)
                resource.prlimit(process.pid, resource.RLIMIT_AS, limit)
        kernel = self._adopt(KernelProcess(process.pid, reader, writer))
        watcher = asyncio.create_task(self._watch_process(process))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        return kernel

    async def _watch_process(self, process: asyncio.subprocess.Process) -> None:
        returncode = await process.wait()
        self._on_exit(
            process.pid, describe_exit(max(returncode, 0), max(-returncode, 0))
        )
