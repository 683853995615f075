"""A real kernel process on a socket pair, driven synchronously by tests.

`start_kernel()` runs `python -m services.execution.kernel.worker --fd N`
with one end of a `socket.socketpair()` passed down, waits for `ready`, and
yields a `KernelHarness` that sends requests and collects events. Every read
has a timeout, so a kernel that hangs fails the test instead of hanging it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reflow.execution.v1 import execution_pb2, kernel_pb2
from reflow.notebook.v1 import notebook_pb2
from services.execution.kernel.protocol import read_frame, write_frame

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0
CELL_TIMEOUT_S = 30.0


@dataclass
class CellRun:
    """The events of one cell, `done` last."""

    events: list[kernel_pb2.KernelEvent]

    @property
    def done(self) -> kernel_pb2.ExecuteDone:
        return self.events[-1].done

    @property
    def status(self) -> notebook_pb2.CellStatus.ValueType:
        return self.done.status

    @property
    def error(self) -> notebook_pb2.CellError:
        return self.done.error

    @property
    def chunks(self) -> list[execution_pb2.StreamChunk]:
        return [e.stream_chunk for e in self.events if e.HasField("stream_chunk")]

    @property
    def stdout(self) -> str:
        return self._text(execution_pb2.STREAM_STDOUT)

    @property
    def stderr(self) -> str:
        return self._text(execution_pb2.STREAM_STDERR)

    @property
    def outputs(self) -> list[notebook_pb2.Output]:
        return [e.output for e in self.events if e.HasField("output")]

    @property
    def texts(self) -> list[str]:
        """The text of each text/plain output."""
        return [o.text for o in self.outputs if o.mime_type == "text/plain"]

    def kinds(self) -> list[str]:
        """Each event's kind, in order (`stream_chunk`, `output`, `done`).

        Consecutive stream chunks count as one: where a batch ends depends
        on when the capture's tick fires (between `print`'s text and its
        newline, say), and only the order of text and outputs is promised.
        """
        kinds: list[str] = []
        for event in self.events:
            kind = str(event.WhichOneof("event"))
            if not (kind == "stream_chunk" and kinds[-1:] == ["stream_chunk"]):
                kinds.append(kind)
        return kinds

    def _text(self, stream: execution_pb2.Stream.ValueType) -> str:
        return "".join(c.text for c in self.chunks if c.stream == stream)


class KernelHarness:
    """Talks to one kernel process."""

    def __init__(self, process: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.process = process
        self.sock = sock
        self._next_cell = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, request: kernel_pb2.KernelRequest) -> None:
        write_frame(self.sock, request)

    def read_event(self, timeout_s: float = CELL_TIMEOUT_S) -> kernel_pb2.KernelEvent:
        self.sock.settimeout(timeout_s)
        event = read_frame(self.sock, kernel_pb2.KernelEvent)
        assert event is not None, "the kernel closed its socket"
        return event

    def start_cell(
        self,
        code: str,
        *,
        cell_type: notebook_pb2.CellType.ValueType = notebook_pb2.CELL_TYPE_PYTHON,
        cell_id: str = "",
        result_name: str = "",
        delete_names: Sequence[str] = (),
        database_url: str = "",
        output_limit_bytes: int = 0,
    ) -> str:
        """Send an ExecuteRequest; the cell id (c1, c2, ... unless given)."""
        self._next_cell += 1
        cell_id = cell_id or f"c{self._next_cell}"
        execute = kernel_pb2.ExecuteRequest(
            cell_id=cell_id,
            cell_type=cell_type,
            code=code,
            result_name=result_name,
            delete_names=delete_names,
            database_url=database_url,
            execution_count=self._next_cell,
            output_limit_bytes=output_limit_bytes,
        )
        self.send(kernel_pb2.KernelRequest(execute=execute))
        return cell_id

    def finish_cell(self, cell_id: str, timeout_s: float = CELL_TIMEOUT_S) -> CellRun:
        """Collect the cell's events up to and including `done`."""
        events = []
        while True:
            event = self.read_event(timeout_s)
            assert event.cell_id == cell_id, f"event for {event.cell_id!r}: {event}"
            events.append(event)
            if event.HasField("done"):
                return CellRun(events)

    def run(
        self, code: str, *, timeout_s: float = CELL_TIMEOUT_S, **options: Any
    ) -> CellRun:
        """Run one cell to completion (options as for `start_cell`)."""
        cell_id = self.start_cell(code, **options)
        return self.finish_cell(cell_id, timeout_s)

    def interrupt(self) -> None:
        os.kill(self.pid, signal.SIGINT)

    def shutdown(self, timeout_s: float = 10.0) -> int:
        """Ask the kernel to exit; its exit code."""
        with contextlib.suppress(OSError):
            self.send(kernel_pb2.KernelRequest(shutdown=kernel_pb2.ShutdownRequest()))
        try:
            return self.process.wait(timeout_s)
        finally:
            self.sock.close()


@contextlib.contextmanager
def start_kernel() -> Iterator[KernelHarness]:
    """A started kernel (ready received); shut down and reaped afterwards."""
    ours, theirs = socket.socketpair()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.execution.kernel.worker",
            "--fd",
            str(theirs.fileno()),
        ],
        pass_fds=[theirs.fileno()],
        cwd=REPO_ROOT,
        start_new_session=True,
    )
    theirs.close()
    kernel = KernelHarness(process, ours)
    try:
        ready = kernel.read_event(START_TIMEOUT_S)
        assert ready.WhichOneof("event") == "ready"
        assert ready.ready.pid == process.pid
        yield kernel
    finally:
        try:
            kernel.shutdown()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
