"""Capture of a kernel's stdout and stderr.

`OutputCapture.install()` points file descriptors 1 and 2 at two pipes and
replaces `sys.stdout`/`sys.stderr` with `CapturedText` streams. What reaches
the pipes is everything written at the file-descriptor level: C extensions
writing to fd 1, and subprocesses (`os.system("echo hi")`), which inherit
fds 1 and 2. Python-level text (`print`, `sys.stdout.write`,
`sys.stdout.buffer.write`) does not go through a syscall per line: it is
appended to an in-memory buffer, which is much cheaper (a loop printing
100,000 lines takes about half the time it took line-buffered onto the
pipe, where each line cost a write syscall). The protocol socket is a
different descriptor, so user output can never corrupt a frame (see
`protocol.py`).

One thread (the only one the kernel starts, after any fork) drains the pipes
and the in-memory buffers and forwards what they carry as `StreamChunk`
events, in batches rather than one message per line, since Python gRPC tops
out near 10k messages/s:

* Once data arrives (in a pipe, or in a buffer, which wakes the thread
  through a wakeup pipe), the thread waits `BATCH_DELAY_S` before reading
  on, so the next lines collect rather than waking it once per line; then it
  takes everything there is and sends it. A batch is sent as soon as
  `BATCH_BYTES` are buffered, so memory stays bounded and a flood streams.
* The cell's `output_limit_bytes` caps what is forwarded. The chunk that
  reaches the cap carries the text up to it, a visible notice and
  `truncated=True`; everything after is read and dropped until the cell ends,
  so the user's code never blocks on a full pipe and nothing accumulates.
  A Python-level buffer holds at most `BUFFER_CHARS` before its writer
  pushes it into the pipe itself (blocking, like a full pipe, until the
  thread catches up), so memory stays bounded there too.
* `flush()` is a handshake through a control pipe: the main thread flushes
  Python's buffers (and C stdio's), writes a byte to the control pipe and
  waits for the thread to acknowledge it. The thread, seeing the byte, takes
  the buffers and reads exactly what the output pipes held at that moment
  (FIONREAD), which is everything written before the byte, sends it, counts
  the request as done and wakes the main thread through a fourth,
  acknowledgement pipe.
  `end_cell()` flushes this way before the worker sends `done`, and
  `display()` before it sends an output, so text printed before either
  arrives before it. The handshake waits on no lock on purpose: `display()`
  runs in user code, where KeyboardInterrupt may strike between any two
  bytecodes, and a wait it interrupted half-way must leave nothing held
  (see the end of this docstring for the one lock a writer takes).

Ordering. Each stream's output comes out in the order it entered that
stream, where Python-level text enters when its buffer is *flushed*: written
into the pipe by the writing thread, or taken by the capture thread, which
takes a buffer and then reads what the pipe held at that moment (FIONREAD),
so what reached the pipe before the take comes out first. A buffer is
flushed

* by the capture thread at each batch tick, at most ~`BATCH_DELAY_S` after
  the text was written;
* by its writer once `BUFFER_CHARS` are pending, on `flush()` (so
  `print(..., flush=True)` is in the pipe when it returns), and before
  `input()` reads (which flushes stdout);
* before any process is started or replaced: an audit hook catches
  `os.system`, `subprocess.Popen` (and so `os.popen`, asyncio's
  subprocesses), `os.posix_spawn*`, `os.spawn*`, `os.exec*`, `os.fork`
  and `os.forkpty`, and `os.register_at_fork` covers forks made otherwise;
* before `display()` sends an output and before the cell's `done`.

Hence, within one stream: Python text keeps its order (the order of the
`write` calls, across threads too); text printed before
a subprocess starts comes before anything the subprocess writes
(`print('a'); os.system('echo b'); print('c')` gives a, b, c); whatever
reached fd 1 or 2 before a print (a finished subprocess's output, an
`os.write`) comes before it; text printed before `display()` or the end of
the cell arrives before that output or `done`. The one order not kept:
Python text followed, with no flush point in between, by a write made
directly to fd 1 or 2 (`os.write`, C code writing to the descriptor, a
subprocess started earlier) comes out after that write when the write
reaches the pipe before the capture thread takes the text, that is, when it
comes within about a batch tick (~15 ms) of the text; `sys.stdout.flush()`
between the two restores their order. (Before, a print was in the pipe when
it returned, but an unfinished line waited for its newline.) As before,
stdout and stderr are separate streams with no order between them. C stdio
(`printf` from an extension) is block-buffered by libc and flushed at
`flush()`. Text that a forked child process (multiprocessing with the fork
method) prints goes straight to the pipe: a child has no capture thread, so
its `sys.stdout` writes through.

Output written while no cell runs, typically by a subprocess or a thread a
cell left running in the background, is attributed to the next cell: up to
`IDLE_HOLD_BYTES` of it are held and sent when the next cell starts, and the
rest is dropped. Output that a background subprocess writes during a cell is
that cell's output, like anything else written to fd 1 at that time.

Signals are handled on the main thread only: the capture thread blocks
SIGINT, so an interrupt always lands in user code. Appending to a buffer
takes no lock (a list append is atomic). The lock that orders flushes is
taken by a writer only around moving its buffer into the pipe, in a `with`
block (released by an interrupt raised inside it; what the interrupt kept
from being written is put back); it is reentrant, for a signal handler or
`__del__` that prints while its thread flushes; and the capture thread only
ever tries it without blocking, so a writer blocked on a full pipe while
holding it cannot stop the thread from draining that pipe.
"""

from __future__ import annotations

import builtins
import codecs
import contextlib
import ctypes
import fcntl
import io
import os
import select
import signal
import sys
import termios
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any, Final, TextIO, cast

from reflow.execution.v1 import execution_pb2, kernel_pb2

if TYPE_CHECKING:
    from collections.abc import Callable

    Send = Callable[[kernel_pb2.KernelEvent], None]

BATCH_BYTES: Final = 64 * 1024
BATCH_DELAY_S: Final = 0.015
IDLE_HOLD_BYTES: Final = 64 * 1024
# What a cell may forward when its request leaves output_limit_bytes at 0.
DEFAULT_OUTPUT_LIMIT_BYTES: Final = 4 * 1024 * 1024
# What sys.stdout or sys.stderr holds in memory before its writer pushes it
# into the pipe itself.
BUFFER_CHARS: Final = 64 * 1024
# A bigger pipe lets a fast writer go on while the thread waits out a batch
# delay; 1 MiB is Linux's default ceiling for unprivileged processes.
_PIPE_BYTES: Final = 1 << 20
_READ_BYTES: Final = 64 * 1024
# While a cell runs, how often the thread looks at the buffers even if no
# wakeup came (one lost to an interrupt at the wrong moment, say).
_BUFFER_CHECK_MS: Final = 250
# How soon the thread tries again to take the buffers when a writer was
# moving them into a pipe.
_RETRY_S: Final = 0.001
# The capture thread failing means output can no longer leave the kernel and
# user code would soon block on a full pipe: the kernel exits instead.
EXIT_CAPTURE_FAILED: Final = 70

STDOUT: Final = execution_pb2.STREAM_STDOUT
STDERR: Final = execution_pb2.STREAM_STDERR

# Audit events raised before a process is started or replaced: the buffers
# are flushed first, so what was printed before comes out before the new
# process's output.
_SPAWN_EVENTS: Final = frozenset(
    {
        "os.exec",
        "os.fork",
        "os.forkpty",
        "os.posix_spawn",
        "os.spawn",
        "os.system",
        "subprocess.Popen",
    }
)

# CapturedText modes; anything but _BUFFERED takes the slow path in write().
_BUFFERED: Final = 0
_LINE_BUFFERED: Final = 1
_WRITE_THROUGH: Final = 2
_DIRECT: Final = 3  # every write goes to the descriptor (no capture thread)
_CLOSED: Final = 4


def truncation_notice(limit_bytes: int) -> str:
    """The line that tells the reader output was cut."""
    return f"\n[output truncated: more than {limit_bytes} bytes]\n"


class OutputCapture:
    """Fds 1 and 2 redirected into pipes, forwarded as StreamChunk events."""

    def __init__(
        self,
        pipes: dict[int, int],
        control: tuple[int, int],
        acknowledgement: tuple[int, int],
        wakeup: tuple[int, int],
        saved: tuple[int, int],
    ) -> None:
        # pipes: read end -> stream; control, acknowledgement, wakeup: (read,
        # write); saved: the original fds 1 and 2, where kernel diagnostics
        # and post-shutdown output go.
        self._pipes = pipes
        self._control_read, self._control_write = control
        self._ack_read, self._ack_write = acknowledgement
        self._wake_read = wakeup[0]
        self._saved_stdout, self._saved_stderr = saved
        self._buffers = _Buffers(wakeup[1])
        self.stdout = CapturedText(1, "<stdout>", self._buffers)
        self.stderr = CapturedText(2, "<stderr>", self._buffers)
        self._send: Send | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        # The cell being captured, and what it has forwarded, guarded by
        # _lock; the capture thread sends while holding it, so end_cell()
        # cannot slip a cell's `done` in front of that cell's last chunk.
        self._lock = threading.Lock()
        self._cell_id: str | None = None
        self._limit_bytes = DEFAULT_OUTPUT_LIMIT_BYTES
        self._forwarded_bytes = 0
        self._dropping = False
        self._truncated = False
        self._pending: list[tuple[int, bytearray]] = []
        # True while this thread holds bytes read from a pipe that are not
        # in _pending yet (see `_nothing_unsent`).
        self._reading = False
        self._pending_bytes = 0
        # When the batch being collected is due; None when none is.
        self._deadline: float | None = None
        self._decoders = _new_decoders()
        # Flush handshake: requests written (main thread), requests handled
        # (capture thread; it sets the count before it wakes the main thread).
        self._requested_flushes = 0
        self._acked_flushes = 0

    @classmethod
    def install(cls) -> OutputCapture:
        """Redirect fds 1 and 2 (and sys.stdout/stderr) into capture pipes."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        saved = (_dup_or_devnull(1), _dup_or_devnull(2))
        pipes: dict[int, int] = {}
        for fd, stream in ((1, STDOUT), (2, STDERR)):
            read_end, write_end = os.pipe()
            with contextlib.suppress(OSError):
                fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
            os.dup2(write_end, fd)  # inheritable: subprocesses write here too
            os.close(write_end)
            os.set_blocking(read_end, False)
            pipes[read_end] = stream
        control, acknowledgement, wakeup = os.pipe(), os.pipe(), os.pipe()
        for fd in (control[0], *acknowledgement, *wakeup):
            os.set_blocking(fd, False)
        capture = cls(pipes, control, acknowledgement, wakeup, saved)
        sys.stdout = cast("TextIO", capture.stdout)
        sys.stderr = cast("TextIO", capture.stderr)
        os.register_at_fork(
            before=capture.flush_buffers, after_in_child=capture._after_fork_in_child
        )
        sys.addaudithook(capture._audit)
        builtins.print = _whole_line_print
        return capture

    def start(self, send: Send) -> None:
        """Start the capture thread; `send` must be safe to call from it."""
        self._send = send
        self._thread = threading.Thread(
            target=self._run, name="reflow-output-capture", daemon=True
        )
        self._thread.start()

    def begin_cell(self, cell_id: str, limit_bytes: int) -> None:
        """Attribute output to `cell_id`, forwarding at most `limit_bytes`."""
        # A cell that swapped sys.stdout for its own object (or closed ours)
        # does not take the next cell's prints with it.
        if self.stdout.closed:
            self.stdout = CapturedText(1, "<stdout>", self._buffers)
        if self.stderr.closed:
            self.stderr = CapturedText(2, "<stderr>", self._buffers)
        sys.stdout = cast("TextIO", self.stdout)
        sys.stderr = cast("TextIO", self.stderr)
        with self._lock:
            self._cell_id = cell_id
            self._limit_bytes = limit_bytes or DEFAULT_OUTPUT_LIMIT_BYTES
            self._forwarded_bytes = 0
            self._dropping = False
            self._truncated = False
        # Send what arrived while idle now, under this cell.
        if not self._nothing_unsent():
            self._request_flush()

    def flush_buffers(self) -> None:
        """Move what sys.stdout and sys.stderr hold into the pipes."""
        for stream in (self.stdout, self.stderr):
            if not stream.closed:
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()

    def flush(self) -> None:
        """Return once everything written so far has been sent."""
        for stream in (sys.stdout, sys.stderr, self.stdout, self.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        _flush_c_stdio()
        if self._nothing_unsent():
            # Most cells print nothing: no need to wake the thread and wait
            # for its answer (two thread hand-offs on every cell).
            return
        target = self._request_flush()
        while self._acked_flushes < target:
            if self._thread is None or not self._thread.is_alive():
                return
            ready, _, _ = select.select([self._ack_read], [], [], 0.5)
            if ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._ack_read, 4096)

    def end_cell(self) -> bool:
        """Flush, stop attributing output to the cell; True if it was truncated."""
        self.flush()
        with self._lock:
            truncated = self._truncated
            self._cell_id = None
            self._dropping = False
        return truncated

    def write_diagnostic(self, text: str) -> None:
        """Write to the kernel's original stderr (not the user's output)."""
        with contextlib.suppress(OSError):
            os.write(self._saved_stderr, text.encode("utf-8", "backslashreplace"))

    def close(self) -> None:
        """Stop the thread and point fds 1 and 2 back where they were."""
        with contextlib.suppress(Exception):
            self.flush()
        self._closing = True
        self._request_flush()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        # Whatever runs after this (atexit handlers, interpreter shutdown)
        # must not write into pipes nobody reads, nor into buffers nobody
        # takes.
        os.dup2(self._saved_stdout, 1)
        os.dup2(self._saved_stderr, 2)
        for stream in (self.stdout, self.stderr):
            stream.write_directly()

    def _audit(self, event: str, args: tuple[object, ...]) -> None:
        # Called for every audit event in the process: keep the common case
        # to one set lookup.
        if event in _SPAWN_EVENTS:
            self.flush_buffers()

    def _after_fork_in_child(self) -> None:
        # The child has no capture thread: its prints go straight to the
        # pipes (the parent's thread reads them). What the buffers still
        # hold is the parent's to send.
        self._buffers.lock = threading.RLock()
        for stream in (self.stdout, self.stderr):
            stream.write_directly(discard=True)

    # -- the capture thread -------------------------------------------------

    def _run(self) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self._loop()
        except BaseException:  # noqa: BLE001 - reported, then the kernel exits
            self.write_diagnostic(
                "reflow kernel: output capture failed\n" + traceback.format_exc()
            )
            os._exit(EXIT_CAPTURE_FAILED)

    def _loop(self) -> None:
        everything = select.poll()
        for fd in (*self._pipes, self._control_read, self._wake_read):
            everything.register(fd, select.POLLIN)
        control_only = select.poll()
        control_only.register(self._control_read, select.POLLIN)
        while not self._closing:
            deadline = self._deadline
            if deadline is not None:
                # Let lines collect instead of waking per line.
                delay_ms = max(0.0, deadline - time.monotonic()) * 1000
                ready = control_only.poll(int(delay_ms) + 1)
            else:
                running = self._cell_id is not None
                ready = everything.poll(_BUFFER_CHECK_MS if running else None)
            requests = self._read_control() if ready else 0
            if requests or (deadline is not None and time.monotonic() >= deadline):
                took_buffers = self._drain()
                with self._lock:
                    self._deadline = (
                        None if took_buffers else time.monotonic() + _RETRY_S
                    )
                    self._send_pending()
                if requests:
                    self._acked_flushes += requests
                    # A full pipe already holds a wakeup for the main thread.
                    with contextlib.suppress(BlockingIOError):
                        os.write(self._ack_write, b"\0")
            elif deadline is None:
                woken = not ready and self._buffers_hold_text()
                for fd, _ in ready:
                    if fd in self._pipes:
                        self._read(fd, _READ_BYTES)
                    elif fd == self._wake_read:
                        woken = True
                if woken:
                    self._buffers_written()

    def _read_control(self) -> int:
        try:
            return len(os.read(self._control_read, 4096))
        except BlockingIOError:
            return 0

    def _nothing_unsent(self) -> bool:
        """True if no output written so far waits anywhere to be sent.

        Checked in this order: the streams' buffers, the pipes, then (under
        the lock) what the thread holds. Bytes the thread has read from a
        pipe are `_reading` until they are in `_pending`, so there is no
        moment at which output is in none of these places.
        """
        if self._buffers_hold_text():
            return False
        if any(_bytes_available(fd) for fd in self._pipes):
            return False
        with self._lock:
            return not self._pending and not self._reading

    def _buffers_hold_text(self) -> bool:
        return self.stdout.holds_text() or self.stderr.holds_text()

    def _buffers_written(self) -> None:
        with self._lock:
            if self._cell_id is not None:
                if self._deadline is None:
                    self._deadline = time.monotonic() + BATCH_DELAY_S
                return
        # While idle, hold it for the next cell now, as pipe data is.
        if not self._drain():
            time.sleep(_RETRY_S)

    def _drain(self) -> bool:
        """Take the buffers and what the pipes hold now; False if a writer
        was moving a buffer into a pipe (the buffers were not taken)."""
        # Read what each pipe holds now, not until it is empty: a background
        # process writing without pause would otherwise keep us here forever.
        buffers = self._buffers
        if not buffers.lock.acquire(blocking=False):
            # Never wait for the writer: it may be blocked on a full pipe.
            for fd in self._pipes:
                self._read(fd, _bytes_available(fd))
            return False
        try:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_read, 4096)
            buffers.woken = False
            texts: dict[int, bytes] = {
                STDOUT: self.stdout.take(),
                STDERR: self.stderr.take(),
            }
            # After the take, and under the lock writers hold while moving a
            # buffer into a pipe: whatever reached a pipe before the take
            # comes out before the text taken, and a writer's move never
            # lands in between.
            sizes = {fd: _bytes_available(fd) for fd in self._pipes}
        finally:
            buffers.lock.release()
        for fd, stream in self._pipes.items():
            self._read(fd, sizes[fd])
            if texts[stream]:
                self._take(stream, texts[stream])
        return True

    def _read(self, fd: int, size: int) -> None:
        while size > 0:
            self._reading = True
            try:
                try:
                    data = os.read(fd, min(size, _READ_BYTES))
                except BlockingIOError:
                    return
                if not data:
                    return
                size -= len(data)
                self._take(self._pipes[fd], data)
            finally:
                # Only now: the bytes are in _pending (or sent, or dropped).
                self._reading = False

    def _take(self, stream: int, data: bytes) -> None:
        with self._lock:
            if self._cell_id is not None and self._deadline is None:
                # Also while dropping: reading a flood once per batch delay
                # keeps this thread from competing with the cell for the GIL.
                self._deadline = time.monotonic() + BATCH_DELAY_S
            if self._dropping:
                return
            if self._cell_id is None:
                data = data[: max(0, IDLE_HOLD_BYTES - self._pending_bytes)]
                if not data:
                    return
            if self._pending and self._pending[-1][0] == stream:
                self._pending[-1][1].extend(data)
            else:
                self._pending.append((stream, bytearray(data)))
            self._pending_bytes += len(data)
            if self._pending_bytes >= BATCH_BYTES and self._cell_id is not None:
                self._send_pending()

    def _send_pending(self) -> None:
        """Send the buffered batch under the current cell (hold _lock)."""
        cell_id = self._cell_id
        if cell_id is None or not self._pending:
            return
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        for stream, raw in pending:
            room = self._limit_bytes - self._forwarded_bytes
            if len(raw) > room:
                text = self._decoders[stream].decode(bytes(raw[:room]), final=True)
                self._forwarded_bytes = self._limit_bytes
                self._dropping = self._truncated = True
                self._decoders = _new_decoders()
                notice = truncation_notice(self._limit_bytes)
                self._send_chunk(cell_id, stream, text + notice, truncated=True)
                return
            self._forwarded_bytes += len(raw)
            text = self._decoders[stream].decode(bytes(raw))
            if text:
                self._send_chunk(cell_id, stream, text, truncated=False)

    def _send_chunk(
        self, cell_id: str, stream: int, text: str, *, truncated: bool
    ) -> None:
        assert self._send is not None
        chunk = execution_pb2.StreamChunk(
            stream=stream,  # type: ignore[arg-type]
            text=text,
            truncated=truncated,
        )
        self._send(kernel_pb2.KernelEvent(cell_id=cell_id, stream_chunk=chunk))

    def _request_flush(self) -> int:
        # Count a request only once its byte is written: an interrupt between
        # the two must leave the count short (harmless), never ahead (which
        # would make every later flush wait for an acknowledgement that
        # cannot come).
        os.write(self._control_write, b"\0")
        self._requested_flushes += 1
        return self._requested_flushes


class _Buffers:
    """What both CapturedText streams share with the capture thread."""

    __slots__ = ("lock", "wake_fd", "woken")

    def __init__(self, wake_fd: int) -> None:
        # Orders every move of buffered text out of memory: a writer's into
        # a pipe, the capture thread's take (with its FIONREAD).
        # Reentrant: a signal handler or __del__ may print (and flush) while
        # its thread is flushing.
        self.lock = threading.RLock()
        self.wake_fd = wake_fd
        # Whether the capture thread has been woken for text it has not
        # taken yet; it clears this before it takes.
        self.woken = False

    def wake(self) -> None:
        self.woken = True
        # BlockingIOError: a full wakeup pipe already holds a wakeup.
        with contextlib.suppress(OSError):
            os.write(self.wake_fd, b"\0")


class _State:
    __slots__ = ("mode", "taken", "written")

    def __init__(self) -> None:
        self.mode = _BUFFERED
        # Characters (bytes, for sys.stdout.buffer) appended and taken out;
        # the difference is what the buffer holds. Approximate when threads
        # race, which only moves the point where the writer flushes.
        self.written = 0
        self.taken = 0


class CapturedText(io.TextIOBase):
    """sys.stdout or sys.stderr: text buffered in memory, not in fd 1 or 2.

    `write()` appends to a list (no lock, no syscall); the buffer leaves
    memory when it is flushed (see the module docstring). `fileno()` is the
    descriptor the text would have gone to, `isatty()` is False, and
    `buffer` takes bytes into the same buffer, in order with the text.
    """

    def __init__(self, fd: int, name: str, buffers: _Buffers) -> None:
        super().__init__()
        self._fd = fd
        self._name = name
        self._buffers = buffers
        self._parts: list[str | bytes] = []
        self._state = _State()
        self._encoding = "utf-8"
        self._errors = "backslashreplace"
        self._line_buffering = False
        self._write_through = False
        self._buffer = CapturedBytes(self)
        # An instance attribute, so print() calls the closure directly: half
        # the cost of a method using self's attributes.
        self.write = self._fast_write()  # type: ignore[method-assign]

    # -- writing ------------------------------------------------------------

    def _fast_write(self) -> Callable[[str], int]:
        append = self._parts.append
        state = self._state
        buffers = self._buffers
        slow = self._slow_write
        flush = self.flush

        def write(text: str, /) -> int:
            if state.mode or text.__class__ is not str:
                return slow(text)
            append(text)
            state.written += len(text)
            if state.written - state.taken >= BUFFER_CHARS:
                flush()
            elif not buffers.woken:
                buffers.wake()
            return len(text)

        return write

    def _slow_write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._append(text)
        mode = self._state.mode
        if mode == _WRITE_THROUGH or (
            mode == _LINE_BUFFERED and ("\n" in text or "\r" in text)
        ):
            self.flush()
        return len(text)

    def _append(self, item: str | bytes) -> None:
        state = self._state
        if state.mode == _CLOSED:
            raise ValueError("I/O operation on closed file.")
        if state.mode == _DIRECT:
            self._write_all(self._encode([item]))
            return
        self._parts.append(item)
        state.written += len(item)
        if state.written - state.taken >= BUFFER_CHARS:
            self.flush()
        elif not self._buffers.woken:
            self._buffers.wake()

    def flush(self) -> None:
        """Move what the buffer holds into the pipe."""
        if self._state.mode == _CLOSED:
            raise ValueError("I/O operation on closed file.")
        if not self._parts:
            return
        with self._buffers.lock:
            data = b""
            written = 0
            try:
                data = self.take()
                while written < len(data):
                    written += os.write(self._fd, data[written:])
            except BaseException:
                # An interrupt (or an error) keeps what was not written, in
                # order, for the next flush.
                if written < len(data):
                    self._parts.insert(0, data[written:])
                    self._state.taken -= len(data) - written
                raise

    def take(self) -> bytes:
        """Empty the buffer; its encoded text (hold the buffers' lock)."""
        parts = self._parts
        count = len(parts)
        if not count:
            return b""
        # Writers only ever append: the first `count` items are ours. They
        # leave the list last, so an interrupt in between loses nothing.
        taken = parts[:count]
        data = self._encode(taken)
        size = sum(map(len, taken))
        del parts[:count]
        self._state.taken += size
        return data

    def holds_text(self) -> bool:
        return bool(self._parts)

    def write_directly(self, *, discard: bool = False) -> None:
        """From now on write straight to the descriptor (no capture thread)."""
        state = self._state
        if state.mode == _CLOSED:
            return
        state.mode = _DIRECT
        if discard:
            self._parts.clear()
        else:
            with contextlib.suppress(OSError):
                self.flush()

    def _encode(self, parts: list[str | bytes]) -> bytes:
        try:
            text = "".join(cast("list[str]", parts))
        except TypeError:  # sys.stdout.buffer was written to as well
            return b"".join(
                part if isinstance(part, bytes) else self._encode([part])
                for part in parts
            )
        try:
            return text.encode(self._encoding, self._errors)
        except UnicodeError:
            # reconfigure(errors="strict") on a narrow encoding: a print the
            # encoding cannot carry is shown escaped rather than failing the
            # capture thread (which takes buffers too).
            return text.encode(self._encoding, "backslashreplace")

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    # -- the rest of a text stream ------------------------------------------

    def close(self) -> None:
        if self._state.mode == _CLOSED:
            return
        try:
            self.flush()
        finally:
            self._state.mode = _CLOSED

    @property
    def closed(self) -> bool:
        return self._state.mode == _CLOSED

    @property
    def buffer(self) -> CapturedBytes:
        return self._buffer

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._encoding

    @property
    def errors(self) -> str:  # type: ignore[override]
        return self._errors

    @property
    def newlines(self) -> None:  # type: ignore[override]
        return None

    @property
    def line_buffering(self) -> bool:
        return self._line_buffering

    @property
    def write_through(self) -> bool:
        return self._write_through

    @property
    def name(self) -> str:
        return self._name

    @property
    def mode(self) -> str:
        return "w"

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def reconfigure(
        self,
        *,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,  # noqa: ARG002 - only "\n" is written
        line_buffering: bool | None = None,
        write_through: bool | None = None,
    ) -> None:
        """As TextIOWrapper.reconfigure()."""
        self.flush()
        if encoding is not None:
            self._encoding = codecs.lookup(encoding).name
            self._errors = errors or "strict"
        elif errors is not None:
            self._errors = errors
        if line_buffering is not None:
            self._line_buffering = line_buffering
        if write_through is not None:
            self._write_through = write_through
        if self._state.mode in (_BUFFERED, _LINE_BUFFERED, _WRITE_THROUGH):
            self._state.mode = (
                _WRITE_THROUGH
                if self._write_through
                else _LINE_BUFFERED
                if self._line_buffering
                else _BUFFERED
            )


class CapturedBytes(io.BufferedIOBase):
    """`sys.stdout.buffer`: bytes into the text stream's buffer, in order."""

    def __init__(self, text: CapturedText) -> None:
        super().__init__()
        self._text = text

    def write(self, data: object, /) -> int:
        raw = memoryview(data).tobytes()  # type: ignore[arg-type]
        self._text._append(raw)  # noqa: SLF001 - the two are one stream
        return len(raw)

    def flush(self) -> None:
        self._text.flush()

    def close(self) -> None:
        self._text.close()

    @property
    def closed(self) -> bool:
        return self._text.closed

    @property
    def name(self) -> str:
        return self._text.name

    def fileno(self) -> int:
        return self._text.fileno()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True


def _new_decoders() -> dict[int, codecs.IncrementalDecoder]:
    # Incremental, so a character split across two reads survives.
    factory = codecs.getincrementaldecoder("utf-8")
    return {STDOUT: factory(errors="replace"), STDERR: factory(errors="replace")}


def _bytes_available(fd: int) -> int:
    buffer = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, buffer)
    return int.from_bytes(buffer, sys.byteorder)


def _dup_or_devnull(fd: int) -> int:
    try:
        return os.dup(fd)
    except OSError:
        return os.open(os.devnull, os.O_WRONLY)


_libc: ctypes.CDLL | None = None


def _flush_c_stdio() -> None:
    # C extensions that printf() into a pipe are block-buffered by libc;
    # fflush(NULL) pushes their text out before the handshake.
    global _libc
    with contextlib.suppress(OSError, AttributeError):
        if _libc is None:
            _libc = ctypes.CDLL(None)
        _libc.fflush(None)


_builtin_print = builtins.print


def _whole_line_print(
    *values: object,
    sep: str | None = " ",
    end: str | None = "\n",
    file: Any = None,
    flush: bool = False,
) -> None:
    """``print``, writing its text and its ``end`` as one piece.

    The builtin writes each value, each separator and the end apart, so two
    threads printing lines can interleave mid-line ("a 0b 0" then two
    newlines). Into our streams, one write keeps each call's line whole;
    anything else goes to the builtin, which knows every other case.
    """
    target = sys.stdout if file is None else file
    if not isinstance(target, CapturedText) or not (
        isinstance(sep, str | None) and isinstance(end, str | None)
    ):
        _builtin_print(*values, sep=sep, end=end, file=file, flush=flush)
        return
    text = (" " if sep is None else sep).join(map(str, values))
    target.write(text + ("\n" if end is None else end))
    if flush:
        target.flush()
