"""The kernel: the process that runs one notebook's code.

`python -m services.execution.kernel.worker --fd N` (or a zygote's forked
child calling `prepare_process()` then `serve(sock)`) talks to the execution
service over the unix socket N (`protocol.py`). It sends
`KernelEvent(ready)` first, then handles `KernelRequest`s one at a time until
`shutdown` or the end of the stream. A reader thread (`inbox.py`) takes the
requests off the socket, so that introspection queries (`introspection.py`,
`tables.py`) are answered at once, even while a cell runs:

* `execute` runs a cell and streams its events: `stream_chunk`s of what it
  printed (`capture.py`), `output`s (`display()` calls, then the last
  expression's value, then the matplotlib figures left open), and finally
  `done` with the status, the error and the duration.
* `delete_names` deletes names from the namespace and answers
  `names_deleted`; a name ending in `*` deletes every name with that prefix
  (a cell's renamed private names, `private.py`).
* `workdir` opens the working directory or writes or removes one of the
  notebook's files there, answering `workdir_done` (`workdir.py`); once it
  is open, each cell's `done` is preceded by a `file_changed` event per
  file the cell added, changed or deleted there.

The kernel is dumb on purpose: one namespace (a fresh `__main__` module), no
knowledge of the dependency graph. The service decides what runs and passes
`delete_names` with each cell (the names that cell wrote last time).

A Python cell is parsed with `ast`; when its last statement is an expression
(and the cell does not end with `;`) that expression is compiled apart and
its value displayed unless it is None. Code is compiled with
`PyCF_ALLOW_TOP_LEVEL_AWAIT`; a cell that awaits runs to completion on the
kernel's one event loop. Any exception, SystemExit included, fails the cell
and leaves the kernel running; KeyboardInterrupt marks it INTERRUPTED.

Interrupts arrive as SIGINT. They raise KeyboardInterrupt only while user
code runs (`InterruptGuard`): a SIGINT that lands while the kernel is
idle or finishing a cell is ignored, and one that lands while the main thread
writes a frame is held until the frame is complete, so the protocol stream is
never cut mid-frame.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import builtins
import contextlib
import inspect
import io
import logging
import os
import random
import signal
import socket
import sys
import threading
import time
import tokenize
import types
from typing import TYPE_CHECKING, Any, Final

from reflow.execution.v1 import kernel_pb2
from reflow.notebook.v1 import notebook_pb2
from services.execution.kernel import introspection
from services.execution.kernel.capture import OutputCapture
from services.execution.kernel.inbox import Inbox
from services.execution.kernel.outputs import figure_output, outputs_for
from services.execution.kernel.private import WILDCARD, demangle, rename_private
from services.execution.kernel.protocol import read_frame, write_frame
from services.execution.kernel.sql import SqlError, SqlRunner
from services.execution.kernel.tables import TableShelf
from services.execution.kernel.tracebacks import (
    cell_error,
    register_source,
    short_error,
)
from services.execution.kernel.workdir import close as close_workdir
from services.execution.kernel.workdir import handle as handle_workdir
from services.execution.kernel.workdir import report_changes

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

COMPILE_FLAGS: Final = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
# How long an interrupted top-level `await` gets to handle its cancellation.
CANCEL_GRACE_S: Final = 1.0
_NO_VALUE: Final = object()
_IGNORED_TOKENS: Final = frozenset(
    {
        tokenize.NEWLINE,
        tokenize.NL,
        tokenize.COMMENT,
        tokenize.INDENT,
        tokenize.DEDENT,
        tokenize.ENDMARKER,
    }
)

# The capture set up by prepare_process(): fds 1 and 2 belong to the whole
# process, so there is one per process.
_capture: OutputCapture | None = None


class Channel:
    """The protocol socket, with writes serialized across threads."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()

    def send(self, event: kernel_pb2.KernelEvent) -> None:
        """Write one event frame (from any thread)."""
        with self._lock:
            write_frame(self._sock, event)

    def receive(self) -> kernel_pb2.KernelRequest | None:
        """The next request; None when the service closed the socket."""
        return read_frame(self._sock, kernel_pb2.KernelRequest)


class InterruptGuard:
    """SIGINT raises KeyboardInterrupt in user code, and only there."""

    def __init__(self) -> None:
        self._armed = False
        self._deferring = 0
        self._pending = False

    def install(self) -> None:
        """Become the SIGINT handler."""
        signal.signal(signal.SIGINT, self._handle)

    @contextlib.contextmanager
    def armed(self) -> Iterator[None]:
        """User code runs inside: SIGINT interrupts it."""
        self._pending = False
        self._armed = True
        try:
            yield
        finally:
            self._armed = False

    def disarm(self) -> None:
        """Ensure SIGINT is ignored (after a signal cut `armed` short)."""
        self._armed = False

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold an interrupt until the block (a frame write) is done."""
        if threading.current_thread() is not threading.main_thread():
            yield  # signals are only ever handled on the main thread
            return
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
            if not self._deferring and self._pending and self._armed:
                self._pending = False
                raise KeyboardInterrupt

    def _handle(self, signal_number: int, frame: types.FrameType | None) -> None:
        if not self._armed:
            return
        if self._deferring:
            self._pending = True
            return
        raise KeyboardInterrupt


class Kernel:
    """One namespace and what it takes to run cells in it."""

    def __init__(
        self, channel: Channel, capture: OutputCapture, interrupts: InterruptGuard
    ) -> None:
        self._channel = channel
        self._capture = capture
        self._interrupts = interrupts
        self._loop = asyncio.new_event_loop()
        self._sql = SqlRunner()
        self._tables = TableShelf()
        self._cell_id: str | None = None
        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = builtins
        main.__dict__["display"] = self.display
        # Pickle and friends find classes defined in cells via __main__. Under
        # `python -m` that was this module; keep it referenced all the same.
        self._launcher_module = sys.modules.get("__main__")
        sys.modules["__main__"] = main
        self.namespace: dict[str, Any] = main.__dict__

    def execute(self, request: kernel_pb2.ExecuteRequest) -> None:
        """Run one cell, streaming its events and finishing with `done`."""
        started = time.monotonic_ns()
        self._capture.begin_cell(request.cell_id, request.output_limit_bytes)
        self._cell_id = request.cell_id
        self._tables.begin_cell(request.cell_id)
        self.delete_names(request.delete_names)
        done = kernel_pb2.ExecuteDone(status=notebook_pb2.CELL_STATUS_SUCCESS)
        try:
            with self._interrupts.armed():
                self._run(request)
        except KeyboardInterrupt as error:
            done.status = notebook_pb2.CELL_STATUS_INTERRUPTED
            done.error.CopyFrom(cell_error(error))
        except SqlError as error:
            done.status = notebook_pb2.CELL_STATUS_ERROR
            # The database's words are the whole story; our frames are noise.
            done.error.CopyFrom(short_error(error.error_type, error.message))
        except BaseException as error:  # noqa: BLE001 - SystemExit too: the cell fails, not the kernel
            done.status = notebook_pb2.CELL_STATUS_ERROR
            done.error.CopyFrom(cell_error(error))
            done.error.message = demangle(done.error.message, request.cell_id)
            done.error.traceback = demangle(done.error.traceback, request.cell_id)
        finally:
            self._interrupts.disarm()
            self._cell_id = None
            _close_figures()
        done.output_truncated = self._capture.end_cell()
        report_changes(request.cell_id, self._channel.send)
        done.duration.FromNanoseconds(time.monotonic_ns() - started)
        self._channel.send(kernel_pb2.KernelEvent(cell_id=request.cell_id, done=done))

    def delete_names(self, names: Iterable[str]) -> None:
        """Remove names from the namespace (missing ones are fine)."""
        for name in names:
            if name.endswith(WILDCARD):
                start = name.removesuffix(WILDCARD)
                for key in [key for key in self.namespace if key.startswith(start)]:
                    del self.namespace[key]
            else:
                self.namespace.pop(name, None)
        self._sql.forget(name for name in names if not name.endswith(WILDCARD))

    def display(self, *objs: object) -> None:
        """Show each object as an output of the running cell, in order."""
        for obj in objs:
            outputs = outputs_for(obj)
            self._keep_table(obj, outputs)
            self._send_outputs(outputs)

    def answer(self, request: kernel_pb2.KernelRequest) -> kernel_pb2.KernelEvent:
        """Reply to an introspection query (on the inbox's thread)."""
        kind = request.WhichOneof("request")
        if kind == "completion_query":
            completions = introspection.completions(
                self.namespace, request.completion_query
            )
            return kernel_pb2.KernelEvent(completions=completions)
        if kind == "variables_query":
            variables = introspection.variables(self.namespace)
            return kernel_pb2.KernelEvent(variables=variables)
        query = request.table_rows_query
        table = self._tables.page(query.table_id, query.offset, query.limit)
        if table is None:
            failed = kernel_pb2.QueryFailed(
                message=f"no table {query.table_id!r} in this kernel", not_found=True
            )
            return kernel_pb2.KernelEvent(query_failed=failed)
        return kernel_pb2.KernelEvent(table_rows=table)

    def close(self) -> None:
        """Release the event loop and database connections."""
        self._sql.close()
        with contextlib.suppress(Exception):
            self._loop.close()

    def _run(self, request: kernel_pb2.ExecuteRequest) -> None:
        if request.cell_type == notebook_pb2.CELL_TYPE_PYTHON:
            value = self._run_python(request.cell_id, request.code)
            if value is not _NO_VALUE and value is not None and not _drawn(value):
                self.display(value)
            self._send_open_figures(shown=value)
        elif request.cell_type == notebook_pb2.CELL_TYPE_SQL:
            result = self._sql.run(
                request.code, request.result_name, request.database_url, self.namespace
            )
            self.display(result)
        elif request.cell_type == notebook_pb2.CELL_TYPE_MARKDOWN:
            markdown = notebook_pb2.Output(mime_type="text/markdown", text=request.code)
            self._send_outputs([markdown])
        else:
            raise ValueError(f"cell type {request.cell_type} cannot be run")

    def _run_python(self, cell_id: str, code: str) -> object:
        """Run the cell; the value of its last expression, or _NO_VALUE."""
        filename = register_source(cell_id, code)
        tree = rename_private(ast.parse(code, filename=filename), cell_id)
        final = tree.body[-1] if tree.body else None
        last: ast.Expression | None = None
        if isinstance(final, ast.Expr) and not _ends_with_semicolon(code):
            tree.body.pop()
            last = ast.Expression(final.value)
        self._evaluate(
            compile(tree, filename, "exec", COMPILE_FLAGS, dont_inherit=True)
        )
        if last is None:
            return _NO_VALUE
        return self._evaluate(
            compile(last, filename, "eval", COMPILE_FLAGS, dont_inherit=True)
        )

    def _evaluate(self, code: types.CodeType) -> object:
        result = eval(code, self.namespace)  # noqa: S307 - running user code is the point
        if code.co_flags & inspect.CO_COROUTINE:
            result = self._run_coroutine(result)
        return result

    def _run_coroutine(self, coroutine: Any) -> object:
        task = self._loop.create_task(coroutine)
        try:
            return self._loop.run_until_complete(task)
        finally:
            if not task.done():
                # Interrupted: stop the cell's coroutine rather than let it
                # resume whenever the next cell awaits something.
                task.cancel()
                with contextlib.suppress(BaseException):
                    self._loop.run_until_complete(
                        asyncio.wait([task], timeout=CANCEL_GRACE_S)
                    )

    def _send_open_figures(self, shown: object) -> None:
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None:
            return
        for number in pyplot.get_fignums():
            figure = pyplot.figure(number)
            if figure is not shown:
                self._send_outputs([figure_output(figure)])

    def _keep_table(self, obj: object, outputs: Sequence[notebook_pb2.Output]) -> None:
        # Rows beyond the output's first ones are fetched later by table id.
        pandas = sys.modules.get("pandas")
        if self._cell_id is None or pandas is None or len(outputs) != 1:
            return
        if outputs[0].WhichOneof("data") != "table":
            return
        if isinstance(obj, pandas.Series):
            obj = obj.to_frame()
        if isinstance(obj, pandas.DataFrame):
            outputs[0].table.table_id = self._tables.keep(self._cell_id, obj)

    def _send_outputs(self, outputs: Sequence[notebook_pb2.Output]) -> None:
        cell_id = self._cell_id
        if cell_id is None:
            return  # display() from a thread that outlived its cell
        # Text printed before display() must arrive before its output.
        self._capture.flush()
        for output in outputs:
            event = kernel_pb2.KernelEvent(cell_id=cell_id, output=output)
            with self._interrupts.deferred():
                self._channel.send(event)


def prepare_process() -> None:
    """Make this process a fresh kernel (once; safe right after a fork)."""
    global _capture
    if _capture is not None:
        return
    # A zygote may have ignored these; user code expects Python's defaults.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # fork() copies RNG state: without this every kernel draws the same numbers.
    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()
    # No display here; Agg must be chosen before pyplot is first imported.
    os.environ["MPLBACKEND"] = "Agg"
    matplotlib = sys.modules.get("matplotlib")
    if matplotlib is not None:
        matplotlib.use("Agg")
    # A zygote's log handlers would print into the user's output.
    for handler in list(logging.root.handlers):
        logging.root.removeHandler(handler)
    logging.root.setLevel(logging.WARNING)
    _standard_fds_open()
    _stdin_from_devnull()
    _capture = OutputCapture.install()


def serve(sock: socket.socket) -> None:
    """Run the kernel loop on `sock` until shutdown or end of stream."""
    prepare_process()
    assert _capture is not None
    sock.setblocking(True)
    # Subprocesses of user code must not hold the channel open.
    sock.set_inheritable(False)
    channel = Channel(sock)
    interrupts = InterruptGuard()
    interrupts.install()
    _capture.start(channel.send)
    kernel = Kernel(channel, _capture, interrupts)
    inbox = Inbox(channel, kernel.answer)
    try:
        channel.send(
            kernel_pb2.KernelEvent(ready=kernel_pb2.KernelReady(pid=os.getpid()))
        )
        inbox.start()
        while (request := inbox.next()) is not None:
            kind = request.WhichOneof("request")
            if kind == "execute":
                kernel.execute(request.execute)
            elif kind == "delete_names":
                kernel.delete_names(request.delete_names.names)
                channel.send(
                    kernel_pb2.KernelEvent(names_deleted=kernel_pb2.NamesDeleted())
                )
            elif kind == "workdir":
                channel.send(handle_workdir(request.workdir))
            elif kind == "shutdown":
                break
    finally:
        kernel.close()
        close_workdir()
        _capture.close()


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m services.execution.kernel.worker --fd N`."""
    parser = argparse.ArgumentParser(
        prog="python -m services.execution.kernel.worker",
        description="A Reflow kernel, speaking the kernel protocol on a socket.",
    )
    parser.add_argument("--fd", type=int, required=True, help="the protocol socket")
    args = parser.parse_args(argv)
    sock = socket.socket(fileno=args.fd)
    prepare_process()
    serve(sock)


def _ends_with_semicolon(code: str) -> bool:
    last: tokenize.TokenInfo | None = None
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.type not in _IGNORED_TOKENS:
                last = token
    except (tokenize.TokenError, SyntaxError):
        return False
    return last is not None and last.type == tokenize.OP and last.string == ";"


def _drawn(value: object) -> bool:
    """Whether `value` is artists (`plt.plot(...)`'s lines) of an open figure.

    The figure itself is shown at the end of the cell; the repr of its
    artists (`[<matplotlib.lines.Line2D at 0x...>]`) would only be noise.
    """
    artist = sys.modules.get("matplotlib.artist")
    pyplot = sys.modules.get("matplotlib.pyplot")
    if artist is None or pyplot is None or not pyplot.get_fignums():
        return False
    items = value if isinstance(value, (list, tuple)) and value else [value]
    open_figures = {pyplot.figure(number) for number in pyplot.get_fignums()}
    return all(
        isinstance(item, artist.Artist)
        and item not in open_figures
        and item.get_figure(root=True) in open_figures
        for item in items
    )


def _close_figures() -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        with contextlib.suppress(Exception):
            pyplot.close("all")


def _standard_fds_open() -> None:
    # With fd 0, 1 or 2 closed, the next pipe or file would take its number.
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)


def _stdin_from_devnull() -> None:
    # input() in a cell gets EOFError instead of waiting for a terminal.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    if sys.stdin is None:
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))


if __name__ == "__main__":
    main()
