"""Capture of a kernel's stdout and stderr at the file-descriptor level.

`OutputCapture.install()` points file descriptors 1 and 2 at two pipes and
replaces `sys.stdout`/`sys.stderr` with line-buffered text streams on those
same descriptors. Everything a cell prints therefore goes the same way, in
the order it was written: Python `print`, C extensions writing to fd 1, and
subprocesses (`os.system("echo hi")`), which inherit fds 1 and 2. The
protocol socket is a different descriptor, so user output can never corrupt
a frame (see `protocol.py`).

One thread (the only one the kernel starts, after any fork) drains the pipes
and forwards what they carry as `StreamChunk` events, in batches rather than
one message per line, since Python gRPC tops out near 10k messages/s:

* Once data arrives, the thread waits `BATCH_DELAY_S` before reading on, so
  the next lines collect in the pipe rather than waking it once per line;
  then it reads everything there is and sends it. A batch is sent as soon as
  `BATCH_BYTES` are buffered, so memory stays bounded and a flood streams.
* The cell's `output_limit_bytes` caps what is forwarded. The chunk that
  reaches the cap carries the text up to it, a visible notice and
  `truncated=True`; everything after is read and dropped until the cell ends,
  so the user's code never blocks on a full pipe and nothing accumulates.
* `flush()` is a handshake through a control pipe: the main thread flushes
  Python's buffers (and C stdio's), writes a byte to the control pipe and
  waits for the thread to acknowledge it. The thread, seeing the byte, reads
  exactly what the output pipes held at that moment (FIONREAD), which is
  everything written before the byte, sends it, counts the request as done
  and wakes the main thread through a fourth, acknowledgement pipe.
  `end_cell()` flushes this way before the worker sends `done`, and
  `display()` before it sends an output, so text printed before either
  arrives before it. The handshake takes no lock on the main thread on
  purpose: `display()` runs in user code, where KeyboardInterrupt may strike
  between any two bytecodes, and a lock it interrupted half-way would stay
  held (Python's locks are not safe against asynchronous exceptions).

Output written while no cell runs, typically by a subprocess a cell left
running in the background, is attributed to the next cell: up to
`IDLE_HOLD_BYTES` of it are held and sent when the next cell starts, and the
rest is dropped. Output that a background subprocess writes during a cell is
that cell's output, like anything else written to fd 1 at that time.

Signals are handled on the main thread only: the capture thread blocks
SIGINT, so an interrupt always lands in user code.
"""

from __future__ import annotations

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
from typing import TYPE_CHECKING, Final, TextIO

from reflow.execution.v1 import execution_pb2, kernel_pb2

if TYPE_CHECKING:
    from collections.abc import Callable

    Send = Callable[[kernel_pb2.KernelEvent], None]

BATCH_BYTES: Final = 64 * 1024
BATCH_DELAY_S: Final = 0.015
IDLE_HOLD_BYTES: Final = 64 * 1024
# What a cell may forward when its request leaves output_limit_bytes at 0.
DEFAULT_OUTPUT_LIMIT_BYTES: Final = 4 * 1024 * 1024
# A bigger pipe lets a fast writer go on while the thread waits out a batch
# delay; 1 MiB is Linux's default ceiling for unprivileged processes.
_PIPE_BYTES: Final = 1 << 20
_READ_BYTES: Final = 64 * 1024
# The capture thread failing means output can no longer leave the kernel and
# user code would soon block on a full pipe: the kernel exits instead.
EXIT_CAPTURE_FAILED: Final = 70

STDOUT: Final = execution_pb2.STREAM_STDOUT
STDERR: Final = execution_pb2.STREAM_STDERR


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
        saved: tuple[int, int],
    ) -> None:
        # pipes: read end -> stream; control, acknowledgement: (read, write);
        # saved: the original fds 1 and 2, where kernel diagnostics and
        # post-shutdown output go.
        self._pipes = pipes
        self._control_read, self._control_write = control
        self._ack_read, self._ack_write = acknowledgement
        self._saved_stdout, self._saved_stderr = saved
        self.stdout = _text_stream(1)
        self.stderr = _text_stream(2)
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
        control, acknowledgement = os.pipe(), os.pipe()
        for fd in (control[0], *acknowledgement):
            os.set_blocking(fd, False)
        capture = cls(pipes, control, acknowledgement, saved)
        sys.stdout = capture.stdout
        sys.stderr = capture.stderr
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
            self.stdout = _text_stream(1)
        if self.stderr.closed:
            self.stderr = _text_stream(2)
        sys.stdout, sys.stderr = self.stdout, self.stderr
        with self._lock:
            self._cell_id = cell_id
            self._limit_bytes = limit_bytes or DEFAULT_OUTPUT_LIMIT_BYTES
            self._forwarded_bytes = 0
            self._dropping = False
            self._truncated = False
        # Send what arrived while idle now, under this cell.
        self._request_flush()

    def flush(self) -> None:
        """Return once everything written so far has been sent."""
        for stream in (sys.stdout, sys.stderr, self.stdout, self.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        _flush_c_stdio()
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
        # must not write into pipes nobody reads.
        os.dup2(self._saved_stdout, 1)
        os.dup2(self._saved_stderr, 2)

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
        for fd in (*self._pipes, self._control_read):
            everything.register(fd, select.POLLIN)
        control_only = select.poll()
        control_only.register(self._control_read, select.POLLIN)
        while not self._closing:
            deadline = self._deadline
            if deadline is not None:
                # Let lines collect in the pipe instead of waking per line.
                delay_ms = max(0.0, deadline - time.monotonic()) * 1000
                ready = control_only.poll(int(delay_ms) + 1)
            else:
                ready = everything.poll()
            requests = self._read_control() if ready else 0
            if requests or (deadline is not None and time.monotonic() >= deadline):
                self._drain()
                with self._lock:
                    self._deadline = None
                    self._send_pending()
                if requests:
                    self._acked_flushes += requests
                    # A full pipe already holds a wakeup for the main thread.
                    with contextlib.suppress(BlockingIOError):
                        os.write(self._ack_write, b"\0")
            elif deadline is None:
                for fd, _ in ready:
                    if fd in self._pipes:
                        self._read(fd, _READ_BYTES)

    def _read_control(self) -> int:
        try:
            return len(os.read(self._control_read, 4096))
        except BlockingIOError:
            return 0

    def _drain(self) -> None:
        # Read what each pipe holds now, not until it is empty: a background
        # process writing without pause would otherwise keep us here forever.
        for fd in self._pipes:
            self._read(fd, _bytes_available(fd))

    def _read(self, fd: int, size: int) -> None:
        while size > 0:
            try:
                data = os.read(fd, min(size, _READ_BYTES))
            except BlockingIOError:
                return
            if not data:
                return
            size -= len(data)
            self._take(self._pipes[fd], data)

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


def _text_stream(fd: int) -> TextIO:
    # Line-buffered with write-through, so a print() is in the pipe before
    # the next os.system() or C-level write, keeping their order.
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(
        io.BufferedWriter(raw),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
        write_through=True,
    )


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
