"""The service's end of the zygote process (``zygote.py``): start it, send
spawn requests with the kernel's socket attached, read its reports."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from typing import TYPE_CHECKING, Final

from reflow.execution.v1 import zygote_pb2
from services.execution.kernel.environment import kernel_environment
from services.execution.kernel.protocol import ProtocolError, decode_body, encode_frame
from services.execution.kernel.zygote import split_frames
from services.shared.errors import FailedPrecondition, Unavailable

if TYPE_CHECKING:
    from collections.abc import Callable

    from services.execution.kernel.sandbox import SandboxConfig

logger = logging.getLogger(__name__)

ZYGOTE_MODULE: Final = "services.execution.kernel.zygote"


class SandboxUnavailable(FailedPrecondition):
    """Kernels were to be confined, and this machine cannot confine them."""

    def __init__(self, why: str) -> None:
        super().__init__(
            f"kernels cannot be confined on this machine ({why}); run the "
            "execution service as root, give it CAP_SYS_ADMIN and CAP_SETUID, "
            "or allow unprivileged user namespaces — or set EXECUTION_SANDBOX=off "
            "to run kernels unconfined, trusting every user with every other's data",
            reason="SANDBOX_UNAVAILABLE",
        )


class ZygoteLost(Unavailable):
    """The zygote went away before it answered a spawn request."""

    def __init__(self) -> None:
        super().__init__("the kernel zygote exited", reason="ZYGOTE_LOST")


class ZygoteClient:
    """The service's end of one zygote process."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        sock: socket.socket,
        on_event: Callable[[zygote_pb2.ZygoteEvent], None],
        on_lost: Callable[[ZygoteClient], None],
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
        on_lost: Callable[[ZygoteClient], None],
        sandbox: SandboxConfig | None = None,
    ) -> ZygoteClient:
        """Start a zygote and wait until it is warm.

        Raises ``SandboxUnavailable`` when ``sandbox`` is given and the zygote
        found that kernels cannot be confined on this machine.
        """
        ours, theirs = socket.socketpair()
        confine = ("--sandbox", sandbox.to_json()) if sandbox is not None else ()
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
                *confine,
                pass_fds=(theirs.fileno(),),
                # Kernels inherit the zygote's environment, and its memory.
                env=kernel_environment(),
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
        if ready.sandbox_error:
            await zygote.close(timeout_s=5.0)
            raise SandboxUnavailable(ready.sandbox_error)
        if ready.missing_modules:
            logger.warning(
                "kernel zygote %d could not pre-import %s",
                ready.pid,
                ", ".join(ready.missing_modules),
            )
        if ready.sandbox:
            logger.info(
                "kernel zygote %d is ready; kernels confined by %s",
                ready.pid,
                ready.sandbox,
            )
        else:
            logger.warning(
                "kernel zygote %d is ready; kernels are NOT confined "
                "(EXECUTION_SANDBOX=off)",
                ready.pid,
            )
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
                raise ZygoteLost from None

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
            self.ready.set_exception(ZygoteLost())
            # Retrieved by start(), if anyone still waits; never a warning.
            self.ready.exception()
        if self._reader is not asyncio.current_task():
            # The reader closes the socket once its sock_recv is unregistered;
            # closing it under a pending sock_recv could later unregister a
            # reused descriptor number.
            self._reader.cancel()
        self._on_lost(self)
