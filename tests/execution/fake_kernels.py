"""Kernels that misbehave on purpose, after jupyter_client's ``signalkernel.py``.

``python -m tests.execution.fake_kernels --fd N --behaviour B`` speaks the
kernel protocol on the inherited socket like the real worker, but simply:
cells are ``exec``\\d in one namespace, the value of a final expression comes
back as a text/plain output, ``print`` sends a stream chunk at once (so a
test can see that a cell is running), SIGINT becomes an INTERRUPTED result.
``prepare_process`` and ``serve`` make the well-behaved variant usable from
the zygote too (``KernelLauncher(worker_module=...)``).

What ``--behaviour`` changes:

* ``normal``: nothing.
* ``ignore-shutdown``: keeps serving after a ShutdownRequest.
* ``ignore-sigterm``: that, and SIGTERM is ignored.
* ``slow-start``: sleeps ``--start-delay-s`` before saying it is ready.
* ``crash-on-start``: exits with code 1 before saying it is ready.
* ``malformed-frame``: answers an ExecuteRequest with bytes that are not a
  KernelEvent.
* ``oversized-frame``: answers an ExecuteRequest with a header announcing a
  frame far over the limit.

Dying mid-cell needs no behaviour: the cell calls ``os._exit`` or SIGKILLs
its own process.
"""

from __future__ import annotations

import argparse
import ast
import os
import signal
import socket
import sys
import time
from typing import Any, Final

from reflow.execution.v1 import execution_pb2, kernel_pb2
from reflow.notebook.v1 import notebook_pb2
from services.execution.kernel.protocol import HEADER, read_frame, write_frame

BEHAVIOURS: Final = (
    "normal",
    "ignore-shutdown",
    "ignore-sigterm",
    "slow-start",
    "crash-on-start",
    "malformed-frame",
    "oversized-frame",
)
Status = notebook_pb2.CellStatus


def prepare_process() -> None:
    """Make SIGINT raise KeyboardInterrupt, whatever the parent had set."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def serve(
    sock: socket.socket, behaviour: str = "normal", start_delay_s: float = 0.0
) -> None:
    """Say ready, then answer requests until shutdown or end of stream."""
    if behaviour == "ignore-sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if behaviour == "slow-start":
        time.sleep(start_delay_s)
    if behaviour == "crash-on-start":
        os._exit(1)
    write_frame(
        sock, kernel_pb2.KernelEvent(ready=kernel_pb2.KernelReady(pid=os.getpid()))
    )
    namespace: dict[str, Any] = {}
    while (request := read_frame(sock, kernel_pb2.KernelRequest)) is not None:
        kind = request.WhichOneof("request")
        if kind == "shutdown":
            if behaviour in ("ignore-shutdown", "ignore-sigterm"):
                continue
            return
        if kind == "delete_names":
            for name in request.delete_names.names:
                namespace.pop(name, None)
            write_frame(
                sock, kernel_pb2.KernelEvent(names_deleted=kernel_pb2.NamesDeleted())
            )
        elif behaviour == "malformed-frame":
            sock.sendall(HEADER.pack(3) + b"\xff\xff\xff")
        elif behaviour == "oversized-frame":
            sock.sendall(HEADER.pack(2**31))
        else:
            run_cell(sock, request.execute, namespace)


def run_cell(
    sock: socket.socket, request: kernel_pb2.ExecuteRequest, namespace: dict[str, Any]
) -> None:
    """Run one cell and report its outputs and result."""
    cell_id = request.cell_id

    def send_print(*values: object, **_: object) -> None:
        chunk = execution_pb2.StreamChunk(
            stream=execution_pb2.STREAM_STDOUT,
            text=" ".join(str(value) for value in values) + "\n",
        )
        write_frame(sock, kernel_pb2.KernelEvent(cell_id=cell_id, stream_chunk=chunk))

    namespace["print"] = send_print
    done = kernel_pb2.ExecuteDone(status=Status.CELL_STATUS_SUCCESS)
    try:
        value = _exec(request.code, namespace)
        if value is not None:
            output = notebook_pb2.Output(mime_type="text/plain", text=repr(value))
            write_frame(sock, kernel_pb2.KernelEvent(cell_id=cell_id, output=output))
    except KeyboardInterrupt:
        done.status = Status.CELL_STATUS_INTERRUPTED
        done.error.type = "KeyboardInterrupt"
    except Exception as error:  # the cell's error is its result
        done.status = Status.CELL_STATUS_ERROR
        done.error.type = type(error).__name__
        done.error.message = str(error)
    write_frame(sock, kernel_pb2.KernelEvent(cell_id=cell_id, done=done))


def _exec(code: str, namespace: dict[str, Any]) -> object:
    tree = ast.parse(code)
    last = tree.body[-1] if tree.body else None
    if isinstance(last, ast.Expr):
        tree.body.pop()
    exec(compile(tree, "<cell>", "exec"), namespace)
    if not isinstance(last, ast.Expr):
        return None
    return eval(compile(ast.Expression(last.value), "<cell>", "eval"), namespace)


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.execution.fake_kernels --fd N --behaviour B``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--behaviour", choices=BEHAVIOURS, default="normal")
    parser.add_argument("--start-delay-s", type=float, default=0.0)
    args = parser.parse_args(argv)
    prepare_process()
    serve(socket.socket(fileno=args.fd), args.behaviour, args.start_delay_s)
    sys.exit(0)


if __name__ == "__main__":
    main()
