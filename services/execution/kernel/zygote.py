"""The zygote: a warm process that forks kernels on demand.

Why a zygote and not a pool of idle kernels. A cold ``python`` that imports
numpy, pandas and matplotlib takes about 400 ms on a fast machine (4 s on a
small one), and DESIGN §9 wants a notebook's first run, kernel start
included, in a tenth of Jupyter's 397 ms. Both designs hide the import: a
pool starts kernels ahead of time, a zygote imports once and ``fork()``\\s,
which takes a few milliseconds for a process this size (spawn to ready
≈13 ms on a 2-core box, against ≈300 ms for a cold kernel that has not even
imported pandas yet; ``bench/kernel_start.py``). The difference is memory
and waste. A forked kernel shares every page the zygote had with it
copy-on-write, so the ~80 MiB heap of imported libraries is paid for once,
not once per kernel, and each kernel adds only the pages it writes (≈4.5 MiB
when idle). That is what makes ten kernels cost far less than ten Jupyter
kernels, each a cold Python that imported everything itself: ten idle
kernels plus the zygote come to ≈150 MiB PSS with pandas and matplotlib
already loaded, ten cold ones to ≈830 MiB once they have imported both. A
pool pays full price for every idle kernel it keeps, and must guess how many
to keep; a zygote costs one process and never runs out. What a zygote asks
in return is discipline about ``fork()``:

* It is single-threaded and starts no threads of its own. Forking copies only
  the calling thread, so a lock held by another thread at that moment stays
  held forever in the child. That is why it never imports ``grpc`` (whose C
  core runs threads and is not fork-safe) and only talks protobuf over a unix
  socket. numpy's OpenBLAS does start a thread pool at import, but it
  registers ``pthread_atfork`` handlers that stop the pool before a fork and
  restart it lazily in the child; the zygote forks one throwaway child right
  after importing, so the pool is gone before the first kernel is asked for.
* The garbage collector is frozen after the imports (``gc.freeze()``, as the
  ``gc`` docs advise for fork servers), so a collection in a kernel does not
  write to, and thereby copy, every page of the shared heap.
* The child drops everything of the zygote's it must not keep (the control
  socket, the wakeup pipe, other kernels' sockets) before it runs user code.

The protocol (``reflow/execution/v1/zygote.proto``) runs over a unix stream
socket inherited as ``--fd``: the service sends ``SpawnKernel`` frames, each
carrying the kernel's end of a fresh socket pair as SCM_RIGHTS; the zygote
answers ``KernelSpawned`` (or ``SpawnFailed``) and later ``KernelExited``
once it has reaped the kernel, so the service can say which signal or exit
code ended it. The loop is a ``selectors`` loop over the control socket and a
signal wakeup pipe (SIGCHLD, SIGTERM), with no threads.

A forked kernel calls ``os.setsid()`` so that it leads its own process group
(SIGINT and SIGTERM sent to the group also reach subprocesses that user code
starts), applies its memory limit as ``RLIMIT_AS``, then hands over to the
worker module (``prepare_process()`` then ``serve(sock)``). ``RLIMIT_AS``
caps address space, not resident memory, and a warm kernel has already
mapped ≈310 MiB (libraries, mostly untouched) before user code runs, so a
useful limit is well above that: 512 MiB leaves user code ≈200 MiB.

If the control socket closes, the service is gone: the zygote SIGKILLs every
kernel it started, reaps them and exits. SIGTERM does the same.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import logging
import os
import resource
import selectors
import signal
import socket
import sys
import time
import traceback
from collections import deque
from typing import TYPE_CHECKING, Final, NoReturn

from reflow.execution.v1 import zygote_pb2
from services.execution.kernel.confinement import open_confinement
from services.execution.kernel.protocol import (
    HEADER,
    ProtocolError,
    decode_body,
    encode_frame,
)
from services.execution.kernel.sandbox import SandboxConfig
from services.shared import logs

if TYPE_CHECKING:
    from collections.abc import Sequence

    from services.execution.kernel.confinement import ConfinedKernel, Confinement

logger = logging.getLogger(__name__)

WORKER_MODULE: Final = "services.execution.kernel.worker"
# What kernels use, imported once here so that every kernel shares the pages.
# matplotlib.pyplot is the expensive part of matplotlib (it picks a backend).
PRELOAD_MODULES: Final = ("numpy", "pandas", "matplotlib", "matplotlib.pyplot")
# Zygote messages are a few dozen bytes; anything larger is a broken peer.
MAX_ZYGOTE_FRAME_BYTES: Final = 65536
# How long to wait for SIGKILLed kernels to be reaped before exiting anyway
# (init adopts and reaps whatever is left).
REAP_TIMEOUT_S: Final = 5.0
_RECV_BYTES: Final = 65536
# One SpawnKernel carries one descriptor, and Linux never merges two
# descriptor-carrying sends into one receive; a little slack costs nothing.
_MAX_FDS_PER_RECV: Final = 4


def split_frames(buffer: bytearray) -> list[bytes]:
    """Remove the complete frames at the front of ``buffer``; return their bodies.

    Frames use the kernel protocol's header (``protocol.HEADER``) but a much
    smaller size limit. Raises ``ProtocolError`` for an oversized frame.
    """
    bodies = []
    while len(buffer) >= HEADER.size:
        (length,) = HEADER.unpack_from(buffer)
        if length > MAX_ZYGOTE_FRAME_BYTES:
            raise ProtocolError(f"a {length}-byte zygote frame")
        end = HEADER.size + length
        if len(buffer) < end:
            break
        bodies.append(bytes(buffer[HEADER.size : end]))
        del buffer[:end]
    return bodies


def describe_exit(exit_code: int, signal_number: int) -> str:
    """Say how a process ended: "exited with code 3", "killed by signal 9 (SIGKILL)"."""
    if signal_number:
        try:
            name = signal.Signals(signal_number).name
        except ValueError:
            return f"killed by signal {signal_number}"
        return f"killed by signal {signal_number} ({name})"
    return f"exited with code {exit_code}"


def preload(worker_module: str) -> list[str]:
    """Import what kernels use; return the modules that could not be imported."""
    # A kernel has no display; Agg must be chosen before pyplot is imported.
    os.environ["MPLBACKEND"] = "Agg"
    missing = []
    for name in (*PRELOAD_MODULES, worker_module):
        try:
            importlib.import_module(name)
        except Exception as error:  # a kernel that imports it will say why
            logger.warning("zygote could not pre-import %s: %r", name, error)
            missing.append(name)
    return missing


class Zygote:
    """The fork server loop: spawn requests in, spawn and exit reports out."""

    def __init__(
        self,
        control: socket.socket,
        worker_module: str,
        confinement: Confinement | None = None,
    ) -> None:
        self._control = control
        self._worker_module = worker_module
        self._confinement = confinement
        self._inbox = bytearray()
        # Kernel sockets received but not yet matched to a SpawnKernel frame.
        self._fds: deque[int] = deque()
        self._kernels: set[int] = set()
        # Confined kernels, by the pid of their init.
        self._confined: dict[int, ConfinedKernel] = {}
        self._wakeup_read, self._wakeup_write = os.pipe()
        os.set_blocking(self._wakeup_read, False)
        os.set_blocking(self._wakeup_write, False)
        self._selector = selectors.DefaultSelector()

    def run(self, missing_modules: Sequence[str] = (), sandbox_error: str = "") -> None:
        """Serve spawn requests until the service goes away or SIGTERM arrives."""
        self._install_signal_handlers()
        self._selector.register(self._control, selectors.EVENT_READ)
        self._selector.register(self._wakeup_read, selectors.EVENT_READ)
        confinement = self._confinement
        ready = zygote_pb2.ZygoteReady(
            pid=os.getpid(),
            missing_modules=list(missing_modules),
            sandbox=confinement.describe() if confinement else "",
            sandbox_error=sandbox_error,
        )
        # Asked to confine kernels and unable to: say why, start none.
        running = self._send(zygote_pb2.ZygoteEvent(ready=ready)) and not sandbox_error
        while running:
            for key, _ in self._selector.select():
                if key.fileobj is self._control:
                    running = running and self._receive()
                else:
                    running = running and self._on_signals()
        self._kill_kernels()

    def _install_signal_handlers(self) -> None:
        # The handlers do nothing: the C-level handler writes the signal
        # number to the wakeup pipe, which wakes the selector. SIGCHLD must
        # have a handler (not SIG_IGN, which would make the kernel auto-reap
        # children and lose their exit status).
        signal.set_wakeup_fd(self._wakeup_write)
        for number in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(number, _ignore_signal)
        # The zygote runs in its own session, so a terminal's Ctrl-C does not
        # reach it; a stray SIGINT must not kill every kernel.
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def _on_signals(self) -> bool:
        numbers = b""
        with contextlib.suppress(BlockingIOError):
            numbers = os.read(self._wakeup_read, 512)
        self._reap()
        if signal.SIGTERM in numbers:
            logger.info("zygote got SIGTERM; killing %d kernels", len(self._kernels))
            return False
        return True

    def _receive(self) -> bool:
        try:
            data, fds, flags, _ = socket.recv_fds(
                self._control, _RECV_BYTES, _MAX_FDS_PER_RECV
            )
        except (BlockingIOError, InterruptedError):
            return True
        except OSError as error:
            logger.info("zygote control socket failed (%s); exiting", error)
            return False
        self._fds.extend(fds)
        if not data:
            logger.info("the service closed the zygote's socket; exiting")
            return False
        if flags & socket.MSG_CTRUNC:
            logger.error("zygote lost file descriptors (MSG_CTRUNC); exiting")
            return False
        self._inbox += data
        try:
            for body in split_frames(self._inbox):
                request = decode_body(body, zygote_pb2.ZygoteRequest)
                if request.WhichOneof("request") != "spawn":
                    raise ProtocolError("a frame with no request")
                if not self._spawn(request.spawn):
                    return False
        except ProtocolError as error:
            logger.error("zygote got a bad request (%s); exiting", error)
            return False
        return True

    def _spawn(self, request: zygote_pb2.SpawnKernel) -> bool:
        """Fork one kernel; in the child this never returns."""
        if not self._fds:
            raise ProtocolError("SpawnKernel arrived without a socket")
        kernel_fd = self._fds.popleft()
        try:
            if self._confinement is not None:
                pid = self._spawn_confined(request, kernel_fd)
            else:
                pid = self._spawn_plain(request, kernel_fd)
        except OSError as error:
            logger.error("zygote could not start a kernel: %s", error)
            failed = zygote_pb2.SpawnFailed(
                request_id=request.request_id, message=str(error)
            )
            return self._send(zygote_pb2.ZygoteEvent(spawn_failed=failed))
        finally:
            os.close(kernel_fd)
        self._kernels.add(pid)
        logger.debug("zygote started kernel %d", pid)
        spawned = zygote_pb2.KernelSpawned(request_id=request.request_id, pid=pid)
        return self._send(zygote_pb2.ZygoteEvent(kernel_spawned=spawned))

    def _spawn_plain(self, request: zygote_pb2.SpawnKernel, kernel_fd: int) -> int:
        pid = os.fork()
        if pid == 0:
            self._become_kernel(kernel_fd, request.memory_limit_bytes)
        return pid

    def _spawn_confined(self, request: zygote_pb2.SpawnKernel, kernel_fd: int) -> int:
        assert self._confinement is not None
        plan = self._confinement.plan(
            f"k{request.request_id}", request.memory_limit_bytes, self._in_use()
        )
        try:
            init = self._confinement.start(
                plan,
                kernel_fd,
                lambda keep: self._close_inherited(keep),
                lambda: self._become_kernel(kernel_fd, 0),
            )
        except BaseException:
            if plan.groups is not None:
                plan.groups.remove()
            raise
        self._confined[init.pid] = init
        return init.pid

    def _in_use(self) -> set[int]:
        return {
            kernel.plan.uid for kernel in self._confined.values() if kernel.plan.uid
        }

    def _become_kernel(self, kernel_fd: int, memory_limit_bytes: int) -> NoReturn:
        """Run in the forked child: shed the zygote, then serve one kernel.

        A confined kernel arrives here already shed, in its own session and
        with its limits set (``sandbox.py``); ``memory_limit_bytes`` is 0.
        """
        status = 1
        try:
            if self._confinement is None:
                self._close_inherited(keep=(kernel_fd,))
                os.setsid()
            if memory_limit_bytes > 0:
                limit = (memory_limit_bytes, memory_limit_bytes)
                resource.setrlimit(resource.RLIMIT_AS, limit)
            _restore_default_signals()
            gc.enable()
            worker = importlib.import_module(self._worker_module)
            worker.prepare_process()
            worker.serve(socket.socket(fileno=kernel_fd))
            status = 0
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:  # the child must reach os._exit, whatever happens
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(status)

    def _close_inherited(self, keep: Sequence[int]) -> None:
        # Close what Python objects own through those objects (so nothing
        # closes a reused descriptor number later), then anything else.
        signal.set_wakeup_fd(-1)
        self._selector.close()
        self._control.close()
        os.close(self._wakeup_read)
        os.close(self._wakeup_write)
        while self._fds:
            os.close(self._fds.popleft())
        low = 3
        for fd in sorted(fd for fd in keep if fd >= low):
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, _max_fd())

    def _reap(self) -> None:
        while self._kernels:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid not in self._kernels:
                continue  # a launcher (sandbox.launch) that already reported
            self._kernels.discard(pid)
            detail = ""
            confined = self._confined.pop(pid, None)
            if confined is not None:
                status, detail = confined.finish(status)
            code = os.waitstatus_to_exitcode(status)
            how = describe_exit(max(code, 0), max(-code, 0))
            logger.debug("kernel %d %s %s", pid, how, detail)
            exited = zygote_pb2.KernelExited(
                pid=pid, exit_code=max(code, 0), signal=max(-code, 0), detail=detail
            )
            self._send(zygote_pb2.ZygoteEvent(kernel_exited=exited))

    def _send(self, event: zygote_pb2.ZygoteEvent) -> bool:
        # Blocking is fine: the service reads this socket all the time, and
        # a zygote with nothing to say has nothing else to do.
        try:
            self._control.sendall(encode_frame(event))
        except OSError as error:
            logger.info("zygote could not reach the service (%s)", error)
            return False
        return True

    def _kill_kernels(self) -> None:
        for pid in self._kernels:
            _kill_group(pid)
        deadline = time.monotonic() + REAP_TIMEOUT_S
        while self._kernels and time.monotonic() < deadline:
            self._selector.select(timeout=0.05)
            with contextlib.suppress(BlockingIOError):
                os.read(self._wakeup_read, 512)
            self._reap()
        if self._kernels:
            logger.warning("zygote exits with unreaped kernels %s", self._kernels)


def settle_threads() -> None:
    """Fork and reap one throwaway child, so that at-fork handlers stop pools.

    numpy's OpenBLAS starts its thread pool at import and stops it in a
    ``pthread_atfork`` handler. Forking once here means the zygote is
    single-threaded before it takes its first request, not after.
    """
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    threads = _thread_count()
    if threads != 1:
        logger.warning("zygote runs %d threads; forking kernels may hang", threads)


def _thread_count() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 1


def _kill_group(pid: int) -> None:
    # A kernel forked an instant ago may not have called setsid() yet, so
    # kill the process itself as well as its group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _ignore_signal(signal_number: int, frame: object) -> None:
    """Do nothing; the wakeup pipe carries the signal to the loop."""


def _restore_default_signals() -> None:
    for number in (signal.SIGCHLD, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _max_fd() -> int:
    try:
        return int(os.sysconf("SC_OPEN_MAX"))
    except (OSError, ValueError):
        return 65536


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m services.execution.kernel.zygote --fd N``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True, help="control socket")
    parser.add_argument("--worker-module", default=WORKER_MODULE)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--sandbox",
        type=SandboxConfig.from_json,
        help="confine kernels (sandbox.SandboxConfig as JSON); without it they are not",
    )
    args = parser.parse_args(argv)
    log_format = os.environ.get("LOG_FORMAT", "text")
    logs.configure(
        "execution",
        args.log_level,
        log_format if log_format in logs.FORMATS else "text",
    )
    # Collections while importing would leave freed holes in pages that the
    # children then fill (and copy); collect once, then freeze (gc docs).
    gc.disable()
    started = time.perf_counter()
    missing = preload(args.worker_module)
    gc.collect()
    gc.freeze()
    settle_threads()
    logger.info(
        "zygote %d warm in %.0f ms", os.getpid(), (time.perf_counter() - started) * 1e3
    )
    confinement, sandbox_error = None, ""
    if args.sandbox is not None:
        confinement, sandbox_error = open_confinement(args.sandbox)
    control = socket.socket(fileno=args.fd)
    control.setblocking(True)
    try:
        Zygote(control, args.worker_module, confinement).run(missing, sandbox_error)
    finally:
        if confinement is not None:
            confinement.close()


if __name__ == "__main__":
    main()
