"""Kernel processes as the service sees them: start, talk, interrupt, stop.

A kernel runs untrusted code, so everything here treats it as a peer that
may lie, stall or die at any moment. It is a separate process in its own
process group; the service talks to it only through framed protobuf on a
unix socket (``protocol.py``), checks every frame's size and syntax, never
unpickles anything, and treats a kernel that sends a malformed message as
broken: it is killed and the caller gets ``KernelDied``.

Lifecycle, after jupyter_client's ``KernelManager``:

* **Start.** ``KernelLauncher.spawn`` forks the kernel from the zygote
  (``zygote.py``: milliseconds, pages shared with the zygote) or, with
  ``use_zygote=False``, starts ``python -m <worker module> --fd N`` in a new
  session. Either way the kernel leads its own process group, and
  ``RLIMIT_AS`` caps its address space when a memory limit is given. The
  kernel is usable once it has sent ``KernelReady``.
* **Run.** ``KernelProcess.execute`` sends one ``ExecuteRequest`` and yields
  the kernel's events for that cell up to and including ``done``. One request
  runs at a time. A caller that stops iterating early leaves the cell's
  remaining events on the socket; the next request first drains them.
* **Interrupt.** SIGINT to the process group: it reaches a kernel that is
  busy in user code (and not reading its socket), and the subprocesses that
  user code started.
* **Stop.** ``shutdown`` escalates as jupyter_client does
  (``manager.py``'s ``shutdown_kernel``/``finish_shutdown``): ask with a
  ``ShutdownRequest`` → wait → SIGTERM to the group → wait → SIGKILL to the
  group. Every wait is bounded.
* **Death.** The zygote reaps its kernels and reports each exit status; the
  fallback launcher waits on its child. That status becomes the reason in
  ``KernelDied``: "killed by signal 9 (SIGKILL)", "exited with code 1". When
  a kernel's socket closes and no exit status arrives within a second, the
  reason is that its connection closed, and the kernel is killed.

If the zygote itself dies, its kernels live on (killing them would lose
every notebook's state); the launcher watches them through pidfds from then
on, and the next ``spawn`` starts a new zygote.
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

from reflow.execution.v1 import kernel_pb2, zygote_pb2
from services.execution.kernel.protocol import (
    HEADER,
    ProtocolError,
    body_length,
    decode_body,
    encode_frame,
)
from services.execution.kernel.zygote import WORKER_MODULE, describe_exit, split_frames
from services.shared.errors import Unavailable

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable, Sequence
    from types import TracebackType

logger = logging.getLogger(__name__)

ZYGOTE_MODULE: Final = "services.execution.kernel.zygote"
# How long to wait for an exit status once a kernel's socket has closed.
EXIT_REPORT_TIMEOUT_S: Final = 1.0
# Frames the kernel sent before it died are still read for this long after
# its exit is known; then the socket is closed even if a subprocess that
# inherited it keeps it open.
_DRAIN_AFTER_EXIT_S: Final = 1.0
# The StreamReader buffers up to twice this before it stops reading the
# socket; big enough that a large output frame is not read in tiny steps.
_STREAM_LIMIT: Final = 1024 * 1024
_ORPHAN_EXIT: Final = "exited (status unknown: the zygote that started it had died)"


class KernelDied(Unavailable):
    """The kernel went away; ``reason`` says how ("killed by signal 9 (SIGKILL)")."""

    reason: str

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"the kernel died: {reason}",
            reason=reason,
            metadata={"exit_reason": reason},
        )

    @property
    def info_reason(self) -> str:
        # ``reason`` holds the human description here; ErrorInfo wants a code.
        return "KERNEL_DIED"


class KernelProcess:
    """One running kernel, from the service's side of its socket."""

    def __init__(
        self, pid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.pid = pid
        self.start_time = time.time()
        self._reader = reader
        self._writer = writer
        self._lock = asyncio.Lock()
        self._exited = asyncio.Event()
        self._exit_reason: str | None = None
        # Set once the service gave up on the kernel (killed, shut down,
        # broken): why requests now fail, until the exit reason is known.
        self._stopping: str | None = None
        self._failure: str | None = None
        # The length of a frame whose header was read but whose body was not
        # (a read cancelled mid-frame resumes here instead of losing sync).
        self._body_length: int | None = None
        # Requests whose last event (done, names_deleted) is still unread.
        self._unanswered = 0

    def __repr__(self) -> str:
        return f"<KernelProcess pid={self.pid} exit_reason={self._exit_reason!r}>"

    @property
    def alive(self) -> bool:
        """True while the kernel runs and the service still uses it."""
        return self._exit_reason is None and self._stopping is None

    @property
    def exit_reason(self) -> str | None:
        """How the process ended ("exited with code 0"); None while it runs."""
        return self._exit_reason

    async def wait_exited(self) -> str:
        """Wait until the process has exited; return how it ended."""
        await self._exited.wait()
        assert self._exit_reason is not None
        return self._exit_reason

    async def execute(
        self, request: kernel_pb2.ExecuteRequest
    ) -> AsyncGenerator[kernel_pb2.KernelEvent, None]:
        """Run one cell; yield its events, ending with (and including) ``done``.

        Raises ``KernelDied`` if the kernel dies or misbehaves first. Wrap the
        iteration in ``contextlib.aclosing`` when it may stop early, so the
        next request does not wait for the generator to be collected.
        """
        async with self._lock:
            await self._drain_unanswered()
            await self._send(kernel_pb2.KernelRequest(execute=request))
            self._unanswered += 1
            while True:
                event = await self._read_event()
                kind = event.WhichOneof("event")
                if kind == "done":
                    self._unanswered -= 1
                    yield event
                    return
                if kind in ("stream_chunk", "output") and event.cell_id in (
                    "",
                    request.cell_id,
                ):
                    yield event
                else:
                    logger.debug("kernel %d sent a stray %s event", self.pid, kind)

    async def delete_names(self, names: Sequence[str]) -> None:
        """Delete ``names`` from the kernel's globals."""
        async with self._lock:
            await self._drain_unanswered()
            request = kernel_pb2.DeleteNamesRequest(names=list(names))
            await self._send(kernel_pb2.KernelRequest(delete_names=request))
            self._unanswered += 1
            while (await self._read_event()).WhichOneof("event") != "names_deleted":
                pass
            self._unanswered -= 1

    def interrupt(self) -> None:
        """Send SIGINT to the kernel's process group."""
        if self.alive:
            self._signal(signal.SIGINT)

    def kill(self) -> None:
        """SIGKILL the kernel's process group, now."""
        if self._exit_reason is None:
            self._stopping = self._stopping or "it was killed"
            self._signal(signal.SIGKILL)

    async def shutdown(self, timeout_s: float = 5.0) -> str:
        """Stop the kernel: ask, then SIGTERM, then SIGKILL; return how it ended.

        Each step waits up to ``timeout_s`` for the process to exit.
        """
        if self.alive and not self._writer.is_closing():
            self._stopping = "it was shut down"
            shutdown = kernel_pb2.KernelRequest(shutdown=kernel_pb2.ShutdownRequest())
            self._writer.write(encode_frame(shutdown))
            if not await self._exits_within(timeout_s):
                logger.warning(
                    "kernel %d ignored a shutdown request for %.1f s; sending SIGTERM",
                    self.pid,
                    timeout_s,
                )
        if self._exit_reason is None:
            self._stopping = self._stopping or "it was shut down"
            self._signal(signal.SIGTERM)
            if not await self._exits_within(timeout_s):
                logger.warning(
                    "kernel %d ignored SIGTERM for %.1f s; sending SIGKILL",
                    self.pid,
                    timeout_s,
                )
                self.kill()
                await self._exits_within(timeout_s)
        self._writer.close()
        if self._exit_reason is None:
            logger.error("kernel %d survived SIGKILL for %.1f s", self.pid, timeout_s)
            return "it did not exit after SIGKILL"
        return self._exit_reason

    def memory_bytes(self) -> int:
        """The kernel's resident set size (VmRSS), or 0 once it is gone."""
        return _proc_kib(f"/proc/{self.pid}/status", "VmRSS:") * 1024

    def pss_bytes(self) -> int:
        """The kernel's proportional set size: shared pages split among sharers."""
        return _proc_kib(f"/proc/{self.pid}/smaps_rollup", "Pss:") * 1024

    # -- the socket -------------------------------------------------------

    def _channel_closed(self) -> bool:
        return self._writer.is_closing()

    async def _close_channel(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()

    async def _wait_ready(self, timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                event = await self._read_event()
        except TimeoutError:
            self._failure = f"it did not start within {timeout_s:g} s and was killed"
            self.kill()
            raise KernelDied(self._failure) from None
        if event.WhichOneof("event") != "ready":
            raise self._malformed("its first message was not KernelReady")

    async def _drain_unanswered(self) -> None:
        # Events of a request whose caller stopped listening: read past them.
        while self._unanswered:
            kind = (await self._read_event()).WhichOneof("event")
            if kind in ("done", "names_deleted"):
                self._unanswered -= 1

    async def _send(self, request: kernel_pb2.KernelRequest) -> None:
        if self._failure is not None:
            raise KernelDied(self._failure)
        if not self.alive:
            raise await self._died("it was stopped")
        self._writer.write(encode_frame(request))
        try:
            await self._writer.drain()
        except ConnectionError:
            raise await self._died("its connection closed") from None

    async def _read_event(self) -> kernel_pb2.KernelEvent:
        if self._failure is not None:
            raise KernelDied(self._failure)
        try:
            if self._body_length is None:
                header = await self._reader.readexactly(HEADER.size)
                self._body_length = body_length(header)
            body = await self._reader.readexactly(self._body_length)
            self._body_length = None
            event = decode_body(body, kernel_pb2.KernelEvent)
        except (asyncio.IncompleteReadError, ConnectionError):
            raise await self._died("its connection closed") from None
        except ProtocolError as error:
            raise self._malformed(str(error)) from None
        if event.WhichOneof("event") is None:
            raise self._malformed("an event with no content")
        return event

    def _malformed(self, detail: str) -> KernelDied:
        logger.warning(
            "kernel %d sent a malformed message (%s); killing it", self.pid, detail
        )
        self._failure = "it sent a malformed message and was killed"
        self.kill()
        return KernelDied(self._failure)

    async def _died(self, fallback: str) -> KernelDied:
        """The error for a kernel that stopped answering, with the best reason known."""
        if self._failure is None:
            if not await self._exits_within(EXIT_REPORT_TIMEOUT_S):
                # A kernel the service cannot talk to is of no use to anyone.
                self.kill()
            self._failure = self._exit_reason or fallback
        return KernelDied(self._failure)

    async def _exits_within(self, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                await self._exited.wait()
        except TimeoutError:
            return False
        return True

    # -- the process ------------------------------------------------------

    def _signal(self, number: signal.Signals) -> None:
        try:
            os.killpg(self.pid, number)
        except ProcessLookupError:
            # The kernel left its group (user code may call setpgid).
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, number)
            return
        if number == signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, number)

    def _mark_exited(self, reason: str) -> None:
        """Record the exit; called by the launcher, which learns of it first."""
        if self._exit_reason is not None:
            return
        self._exit_reason = reason
        self._exited.set()
        logger.info("kernel %d %s", self.pid, reason)
        # Subprocesses user code started must not outlive their kernel. The
        # group id cannot be reused while any member lives, so this reaches
        # only them.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        loop = asyncio.get_running_loop()
        loop.call_later(_DRAIN_AFTER_EXIT_S, self._writer.transport.abort)


def _proc_kib(path: str, key: str) -> int:
    try:
        with open(path, encoding="ascii") as file:
            for line in file:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


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


class _ZygoteLost(Unavailable):
    """The zygote went away before it answered a spawn request."""

    def __init__(self) -> None:
        super().__init__("the kernel zygote exited", reason="ZYGOTE_LOST")


class _Zygote:
    """The service's end of one zygote process."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        sock: socket.socket,
        on_event: Callable[[zygote_pb2.ZygoteEvent], None],
        on_lost: Callable[[_Zygote], None],
    ) -> None:
        self.process = process
        self.alive = True
        self.ready: asyncio.Future[zygote_pb2.ZygoteReady] = (
            asyncio.get_running_loop().create_future()
        )
        self._sock = sock
        self._on_event = on_event
        self._on_lost = on_lost
        self._send_lock = asyncio.Lock()
        self._reader = asyncio.create_task(self._read_events())

    @classmethod
    async def start(
        cls,
        worker_module: str,
        timeout_s: float,
        on_event: Callable[[zygote_pb2.ZygoteEvent], None],
        on_lost: Callable[[_Zygote], None],
    ) -> _Zygote:
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                ZYGOTE_MODULE,
                "--fd",
                str(theirs.fileno()),
                "--worker-module",
                worker_module,
                "--log-level",
                logging.getLevelName(logger.getEffectiveLevel()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                # Its own session: a terminal's Ctrl-C is for the service.
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        zygote = cls(process, ours, on_event, on_lost)
        try:
            async with asyncio.timeout(timeout_s):
                ready = await zygote.ready
        except BaseException as error:
            await zygote.close(timeout_s=1.0)
            if isinstance(error, TimeoutError):
                raise Unavailable(
                    f"the kernel zygote did not start within {timeout_s:g} s"
                ) from None
            raise
        if ready.missing_modules:
            logger.warning(
                "kernel zygote %d could not pre-import %s",
                ready.pid,
                ", ".join(ready.missing_modules),
            )
        logger.info("kernel zygote %d is ready", ready.pid)
        return zygote

    async def send_spawn(
        self, request_id: int, memory_limit_bytes: int, kernel_fd: int
    ) -> None:
        """Send a SpawnKernel frame with ``kernel_fd`` attached."""
        spawn = zygote_pb2.SpawnKernel(
            request_id=request_id, memory_limit_bytes=memory_limit_bytes
        )
        frame = encode_frame(zygote_pb2.ZygoteRequest(spawn=spawn))
        loop = asyncio.get_running_loop()
        async with self._send_lock:
            try:
                while True:
                    try:
                        sent = socket.send_fds(self._sock, [frame], [kernel_fd])
                        break
                    except BlockingIOError:
                        await self._writable()
                if sent < len(frame):
                    await loop.sock_sendall(self._sock, frame[sent:])
            except OSError:
                self._lose()
                raise _ZygoteLost from None

    async def close(self, timeout_s: float) -> None:
        """Close the socket (the zygote then kills its kernels) and reap it."""
        self._lose()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        try:
            async with asyncio.timeout(timeout_s):
                await self.process.wait()
        except TimeoutError:
            logger.warning(
                "kernel zygote %d did not exit; killing it", self.process.pid
            )
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            async with asyncio.timeout(timeout_s):
                await self.process.wait()

    async def _writable(self) -> None:
        loop = asyncio.get_running_loop()
        writable = loop.create_future()

        def wake() -> None:
            if not writable.done():
                writable.set_result(None)

        # By socket object, not number: removal stays right if it was closed.
        loop.add_writer(self._sock, wake)
        try:
            await writable
        finally:
            loop.remove_writer(self._sock)

    async def _read_events(self) -> None:
        loop = asyncio.get_running_loop()
        buffer = bytearray()
        try:
            while data := await loop.sock_recv(self._sock, 65536):
                buffer += data
                for body in split_frames(buffer):
                    event = decode_body(body, zygote_pb2.ZygoteEvent)
                    if event.WhichOneof("event") == "ready":
                        if not self.ready.done():
                            self.ready.set_result(event.ready)
                    else:
                        self._on_event(event)
        except (OSError, ProtocolError) as error:
            logger.error("lost the kernel zygote: %s", error)
        finally:
            self._lose()
            self._sock.close()

    def _lose(self) -> None:
        if not self.alive:
            return
        self.alive = False
        if not self.ready.done():
            self.ready.set_exception(_ZygoteLost())
            # Retrieved by start(), if anyone still waits; never a warning.
            self.ready.exception()
        if self._reader is not asyncio.current_task():
            # The reader closes the socket once its sock_recv is unregistered;
            # closing it under a pending sock_recv could later unregister a
            # reused descriptor number.
            self._reader.cancel()
        self._on_lost(self)


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
    ) -> None:
        self.use_zygote = use_zygote
        self._worker_module = worker_module
        self._worker_args = tuple(worker_args)
        self._start_timeout_s = start_timeout_s
        self._zygote_start_timeout_s = zygote_start_timeout_s
        self._zygote: _Zygote | None = None
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
            except _ZygoteLost:
                if attempt == 2:
                    raise
                logger.warning("the kernel zygote died during a spawn; retrying")
        raise AssertionError("unreachable")

    async def _fork_from(
        self, zygote: _Zygote, memory_limit_bytes: int
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

    async def _running_zygote(self) -> _Zygote:
        async with self._zygote_lock:
            if self._closed:
                raise Unavailable("the kernel launcher is closed")
            if self._zygote is None or not self._zygote.alive:
                if self._zygote is not None:
                    logger.warning("restarting the kernel zygote")
                self._zygote = await _Zygote.start(
                    self._worker_module,
                    self._zygote_start_timeout_s,
                    self._on_zygote_event,
                    self._on_zygote_lost,
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
            self._on_exit(exited.pid, describe_exit(exited.exit_code, exited.signal))

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

    def _on_zygote_lost(self, zygote: _Zygote) -> None:
        if zygote is not self._zygote:
            return
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(_ZygoteLost())
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
