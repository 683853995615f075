"""Jupyter's side of the benchmark: ipykernel driven by jupyter_client, as a UI would.

Each kernel is started with ``AsyncKernelManager`` (the ``python3`` kernel
spec that ipykernel installs into the venv, so it runs this very
interpreter) and talked to with its ``AsyncKernelClient``. An execution is
over when both its ``execute_reply`` (shell) and the ``idle`` status on
iopub have arrived, everything it sent on iopub (stream text, display data,
errors) collected on the way. Figures use ipykernel's default, the inline
backend.

The ``round_trip_envoy`` and chain measures use the other client a
program would: ``BlockingKernelClient.execute_interactive`` on the same
kind of kernel, which returns once the reply and the ``idle`` status are in.

The kernels' connection files and IPython's profile go to a temporary
directory, so the run leaves nothing in the home directory.

ipykernel and jupyter_client are installed by ``make bench`` only (they are
not in the lock); without them mypy sees their names as ``Any``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TextIO

from jupyter_client.manager import (  # type: ignore[import-not-found, unused-ignore]
    AsyncKernelManager,
)

from bench.measures import (
    IMPORT_CODE,
    INTERRUPT_AFTER_S,
    LOOP_CODE,
    PLOT_CODE,
    PLOT_SETUP_CODE,
    PRINT_CODE,
    PRINT_WARMUP_CODE,
    TIMEOUT_S,
    X_CODE,
    BenchError,
    Stopwatch,
    chain_codes,
    expected_print_text,
    png_size,
    total_pss_mib,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from pathlib import Path

Message = dict[str, Any]

KERNEL_NAME: Final = "python3"


@dataclass
class Execution:
    """What an execute request delivered, and when (ms after sending it)."""

    stdout: list[str] = field(default_factory=list)
    pngs: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    reply_status: str = ""
    finished_ms: float = 0.0

    def take(self, message: Message) -> None:
        kind = str(message["msg_type"])
        content: dict[str, Any] = message["content"]
        if kind == "stream" and content.get("name") == "stdout":
            self.stdout.append(str(content["text"]))
        elif kind in ("display_data", "execute_result"):
            png = content.get("data", {}).get("image/png")
            if png is not None:
                self.pngs.append(base64.b64decode(str(png)))
        elif kind == "error":
            self.errors.append(str(content.get("ename", "")))


def parent_id(message: Message) -> str:
    return str(message.get("parent_header", {}).get("msg_id", ""))


def is_status(message: Message, state: str) -> bool:
    return bool(
        message["msg_type"] == "status"
        and message["content"].get("execution_state") == state
    )


class Kernel:
    """One ipykernel process and a client connected to it."""

    def __init__(self, manager: Any, client: Any) -> None:
        self.manager = manager
        self.client = client

    @classmethod
    async def start(cls, log: TextIO) -> Kernel:
        """Start a kernel and wait until it answers (``wait_for_ready``)."""
        manager = AsyncKernelManager(kernel_name=KERNEL_NAME)
        client = None
        try:
            await manager.start_kernel(stdout=log, stderr=log)
            client = manager.client()
            client.start_channels()
            await client.wait_for_ready(timeout=TIMEOUT_S)
        except BaseException:
            # Also when cancelled half-way: no kernel may outlive the run.
            if client is not None:
                client.stop_channels()
            if manager.has_kernel:
                await manager.shutdown_kernel(now=True)
            raise
        return cls(manager, client)

    @property
    def pid(self) -> int:
        pid = getattr(self.manager.provisioner, "pid", None)
        if not isinstance(pid, int):
            raise BenchError("the Jupyter kernel has no pid")
        return pid

    async def stop(self) -> None:
        self.client.stop_channels()
        await self.manager.shutdown_kernel(now=True)

    def send(self, code: str) -> str:
        return str(self.client.execute(code))

    async def iopub_until(
        self, msg_id: str, execution: Execution, done: Callable[[Message], bool]
    ) -> Message:
        """Collect the request's iopub messages into ``execution`` until ``done``."""
        while True:
            message: Message = await self.client.get_iopub_msg(timeout=TIMEOUT_S)
            if parent_id(message) != msg_id:
                continue
            execution.take(message)
            if done(message):
                return message

    async def reply(self, msg_id: str) -> Message:
        while True:
            message: Message = await self.client.get_shell_msg(timeout=TIMEOUT_S)
            if parent_id(message) == msg_id:
                return message

    async def finish(self, msg_id: str, execution: Execution) -> None:
        """Read up to the idle status and the reply (whichever order they come)."""
        await self.iopub_until(msg_id, execution, lambda m: is_status(m, "idle"))
        reply = await self.reply(msg_id)
        execution.reply_status = str(reply["content"].get("status", ""))

    async def execute(self, code: str) -> Execution:
        """Run ``code``; the clock stops when both the reply and idle are in."""
        execution = Execution()
        clock = Stopwatch()
        msg_id = self.send(code)
        await self.finish(msg_id, execution)
        execution.finished_ms = clock.ms()
        return execution

    async def execute_ok(self, code: str) -> Execution:
        execution = await self.execute(code)
        if execution.reply_status != "ok":
            raise BenchError(f"Jupyter's execution failed: {execution.errors}")
        return execution


@contextlib.contextmanager
def jupyter_environment() -> Iterator[None]:
    """Connection files and IPython's profile in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="jupyter-bench-") as tmp:
        changes = {
            "JUPYTER_RUNTIME_DIR": os.path.join(tmp, "runtime"),
            "IPYTHONDIR": os.path.join(tmp, "ipython"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "MPLBACKEND": None,  # ipykernel's default (inline) applies
        }
        saved = {name: os.environ.get(name) for name in changes}
        try:
            for name, value in changes.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            yield
        finally:
            for name, old in saved.items():
                if old is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = old


@contextlib.contextmanager
def jupyter_session(log_path: Path) -> Iterator[TextIO]:
    """The environment for Jupyter's kernels, and the log their output goes to."""
    with jupyter_environment(), log_path.open("w", encoding="utf-8") as log:
        yield log


@contextlib.asynccontextmanager
async def started_kernels(count: int, log: TextIO) -> AsyncIterator[list[Kernel]]:
    kernels: list[Kernel] = []
    try:
        for _ in range(count):
            kernels.append(await Kernel.start(log))
        yield kernels
    finally:
        await asyncio.gather(*(kernel.stop() for kernel in kernels))


# -- the measures ------------------------------------------------------------


class _OnOwnKernel:
    """A trial with a kernel of its own, started in ``prepare``."""

    def __init__(self, log: TextIO) -> None:
        self.log = log
        self._kernel: Kernel | None = None

    @property
    def kernel(self) -> Kernel:
        if self._kernel is None:
            raise BenchError("the trial was not prepared")
        return self._kernel

    async def prepare(self) -> None:
        self._kernel = await Kernel.start(self.log)
        await self.warm_up()

    async def warm_up(self) -> None:
        await self.kernel.execute_ok(X_CODE)

    async def finish(self) -> None:
        if self._kernel is not None:
            await self._kernel.stop()
            self._kernel = None


class RoundTrip(_OnOwnKernel):
    """execute("x = 1") until both the reply and idle are in."""

    async def once(self) -> float:
        return (await self.kernel.execute_ok(X_CODE)).finished_ms


class _Blocking(_OnOwnKernel):
    """A trial on its own kernel, driven by a ``BlockingKernelClient``.

    ``execute_interactive`` blocks the event loop while it runs, as it
    blocks any program that calls it; nothing else runs meanwhile.
    """

    def __init__(self, log: TextIO) -> None:
        super().__init__(log)
        self._blocking: Any = None

    async def warm_up(self) -> None:
        self._blocking = self.kernel.manager.blocking_client()
        self._blocking.start_channels()
        self._blocking.wait_for_ready(timeout=TIMEOUT_S)
        self.execute(X_CODE)

    def execute(self, code: str) -> None:
        errors: list[str] = []

        def collect(message: Message) -> None:
            if message["msg_type"] == "error":
                errors.append(str(message["content"].get("ename", "")))

        reply = self._blocking.execute_interactive(
            code, timeout=TIMEOUT_S, output_hook=collect
        )
        if reply["content"].get("status") != "ok" or errors:
            raise BenchError(f"Jupyter's execution failed: {errors}")

    async def finish(self) -> None:
        if self._blocking is not None:
            self._blocking.stop_channels()
            self._blocking = None
        await super().finish()


class BlockingRoundTrip(_Blocking):
    """execute_interactive("x = 1")."""

    async def once(self) -> float:
        clock = Stopwatch()
        self.execute(X_CODE)
        return clock.ms()


class BlockingChain(_Blocking):
    """The ten chain cells, one execute_interactive after another."""

    count = 0

    async def warm_up(self) -> None:
        await super().warm_up()
        for code in chain_codes():
            self.execute(code)

    async def once(self) -> float:
        self.count += 1
        codes = chain_codes(1 + self.count % 2)
        clock = Stopwatch()
        for code in codes:
            self.execute(code)
        return clock.ms()


class FirstRun:
    """start_kernel + start_channels + wait_for_ready + execute until idle."""

    def __init__(self, log: TextIO) -> None:
        self.log = log

    async def prepare(self) -> None:
        pass

    async def once(self) -> float:
        clock = Stopwatch()
        kernel = await Kernel.start(self.log)
        try:
            await kernel.execute_ok(X_CODE)
            return clock.ms()
        finally:
            await kernel.stop()

    async def finish(self) -> None:
        pass


class PrintLines(_OnOwnKernel):
    """100,000 printed lines, until idle with all the stream text received."""

    expected = expected_print_text()

    async def warm_up(self) -> None:
        await self.kernel.execute_ok(PRINT_WARMUP_CODE)

    async def once(self) -> float:
        execution = await self.kernel.execute_ok(PRINT_CODE)
        text = "".join(execution.stdout)
        if text != self.expected:
            raise BenchError(
                f"Jupyter delivered {text.count(chr(10))} of the printed lines"
            )
        return execution.finished_ms


class Figure(_OnOwnKernel):
    """A matplotlib plot (inline backend) until its display_data PNG and idle."""

    def __init__(self, log: TextIO, notes: dict[str, object]) -> None:
        super().__init__(log)
        self.notes = notes

    async def warm_up(self) -> None:
        await self.kernel.execute_ok(PLOT_SETUP_CODE)
        await self.kernel.execute_ok(PLOT_CODE)  # fonts, first draw

    async def once(self) -> float:
        execution = await self.kernel.execute_ok(PLOT_CODE)
        if len(execution.pngs) != 1:
            raise BenchError(f"Jupyter delivered {len(execution.pngs)} PNGs, not one")
        png = execution.pngs[0]
        self.notes["png"] = {"bytes": len(png), "size": png_size(png)}
        return execution.finished_ms


class Interrupt(_OnOwnKernel):
    """From interrupt_kernel() to the KeyboardInterrupt error on iopub."""

    async def once(self) -> float:
        kernel = self.kernel
        execution = Execution()
        async with asyncio.timeout(TIMEOUT_S):
            msg_id = kernel.send(LOOP_CODE)
            await kernel.iopub_until(msg_id, execution, lambda m: is_status(m, "busy"))
            await asyncio.sleep(INTERRUPT_AFTER_S)
            clock = Stopwatch()
            await kernel.manager.interrupt_kernel()
            await kernel.iopub_until(
                msg_id, execution, lambda m: m["msg_type"] == "error"
            )
            elapsed = clock.ms()
            await kernel.finish(msg_id, execution)
        if execution.errors != ["KeyboardInterrupt"]:
            raise BenchError(f"the loop ended with {execution.errors}")
        return elapsed


async def memory(count: int, log: TextIO) -> tuple[float, float]:
    """Total PSS (MiB) of ``count`` idle kernels, then after the imports."""
    async with started_kernels(count, log) as kernels:
        for kernel in kernels:
            await kernel.execute_ok(X_CODE)
        pids = [kernel.pid for kernel in kernels]
        await asyncio.sleep(0.5)  # let the kernels settle after their first run
        idle = total_pss_mib(pids)
        for kernel in kernels:
            await kernel.execute_ok(IMPORT_CODE)
        await asyncio.sleep(0.5)
        loaded = total_pss_mib(pids)
    return idle, loaded
