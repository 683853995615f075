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
* **Query.** ``KernelProcess.query`` asks an introspection question
  (completions, variables, table rows) that the kernel answers at once, even
  while a cell runs. Its reply carries the query's id and is picked out of
  the stream by whoever is reading it: the running cell's reader, or, when
  nothing runs, the query itself (under the same lock).
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
import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Any, Final

from reflow.execution.v1 import kernel_pb2
from services.execution.kernel.protocol import (
    HEADER,
    ProtocolError,
    body_length,
    decode_body,
    encode_frame,
)
from services.shared.errors import Unavailable

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Sequence

logger = logging.getLogger(__name__)

# How long to wait for an exit status once a kernel's socket has closed.
EXIT_REPORT_TIMEOUT_S: Final = 1.0
# Frames the kernel sent before it died are still read for this long after
# its exit is known; then the socket is closed even if a subprocess that
# inherited it keeps it open.
_DRAIN_AFTER_EXIT_S: Final = 1.0


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
        # Introspection queries waiting for their reply, by query id.
        self._replies: dict[int, asyncio.Future[kernel_pb2.KernelEvent]] = {}
        self._last_query_id = 0

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
                if kind in (
                    "stream_chunk",
                    "output",
                    "file_changed",
                ) and event.cell_id in (
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

    async def query(self, request: kernel_pb2.KernelRequest) -> kernel_pb2.KernelEvent:
        """Ask an introspection query; its reply (``query_failed`` included).

        Does not wait for a running cell. Raises ``KernelDied`` if the kernel
        dies or misbehaves first; callers bound the wait with a timeout.
        """
        self._last_query_id += 1
        request.query_id = self._last_query_id
        reply = asyncio.get_running_loop().create_future()
        self._replies[request.query_id] = reply
        try:
            await self._send(request)
            await self._await_reply(reply)
            answer: kernel_pb2.KernelEvent = reply.result()
            return answer
        finally:
            self._replies.pop(request.query_id, None)

    async def _await_reply(self, reply: asyncio.Future[kernel_pb2.KernelEvent]) -> None:
        # Whoever holds the lock reads the socket and hands replies over
        # (_read_event); once nobody does, this query reads until it has its
        # own.
        acquiring = asyncio.ensure_future(self._lock.acquire())
        waits: set[asyncio.Future[Any]] = {reply, acquiring}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            acquiring.cancel()
            if acquiring.done() and not acquiring.cancelled():
                self._lock.release()
            raise
        if not acquiring.done():
            acquiring.cancel()
            return
        try:
            while not reply.done():
                event = await self._read_any_event()
                if not self._handed_over(event) and self._unanswered:
                    # Events of a request whose caller stopped listening.
                    if event.WhichOneof("event") in ("done", "names_deleted"):
                        self._unanswered -= 1
        finally:
            self._lock.release()

    async def workdir(
        self, request: kernel_pb2.WorkdirRequest
    ) -> kernel_pb2.WorkdirDone:
        """Open, fill or change the kernel's working directory (`workdir.py`)."""
        async with self._lock:
            await self._drain_unanswered()
            await self._send(kernel_pb2.KernelRequest(workdir=request))
            self._unanswered += 1
            while (event := await self._read_event()).WhichOneof(
                "event"
            ) != "workdir_done":
                pass
            self._unanswered -= 1
            return event.workdir_done

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
        """Resident set size (VmRSS) of the kernel's processes, or 0 once gone.

        A confined kernel is its namespace's init, the kernel under it and
        whatever that started: all of them are what the notebook costs.
        """
        return sum(
            _proc_kib(f"/proc/{pid}/status", "VmRSS:") * 1024
            for pid in process_tree(self.pid)
        )

    def pss_bytes(self) -> int:
        """Proportional set size of the kernel's processes (shared pages split)."""
        return sum(
            _proc_kib(f"/proc/{pid}/smaps_rollup", "Pss:") * 1024
            for pid in process_tree(self.pid)
        )

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
            if kind in ("done", "names_deleted", "workdir_done"):
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
        """The next event that is not a query's reply (replies are handed over)."""
        while True:
            event = await self._read_any_event()
            if not self._handed_over(event):
                return event

    def _handed_over(self, event: kernel_pb2.KernelEvent) -> bool:
        """True if ``event`` is a query's reply (given to that query, if it
        still waits)."""
        if not event.query_id:
            return False
        reply = self._replies.get(event.query_id)
        if reply is not None and not reply.done():
            reply.set_result(event)
        return True

    async def _read_any_event(self) -> kernel_pb2.KernelEvent:
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


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants that are still running."""
    tree, index = [pid], 0
    while index < len(tree):
        parent = tree[index]
        index += 1
        try:
            with open(
                f"/proc/{parent}/task/{parent}/children", encoding="ascii"
            ) as file:
                tree.extend(int(child) for child in file.read().split())
        except (OSError, ValueError):
            continue
    return tree
