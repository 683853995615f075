"""The real services, started as processes for a benchmark run, and stopped for sure.

``running_stack`` starts the notebook, execution and gateway services exactly
as ``make run`` does (``python -m services.<name>``, each in a session of its
own, through ``services.stack.processes``), on free loopback ports, with a
fresh temporary data directory and internal secret, and their logs in a
file rather than on the terminal. It waits for each to answer gRPC health,
then yields where to send the public RPCs and the token to send:

* through the gateway (the default): both services at the gateway's gRPC
  port, with a development user token from ``services.gateway.devtoken``;
* ``direct``: the notebook and execution services' own ports, with an
  internal token from ``python -m services.shared.auth mint``.

On the way out (an exception, Ctrl-C, or the end of the run) every service
is stopped front door first, and anything the execution service forked that
outlived it (the zygote, kernels) is killed.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from services.stack.probes import GrpcHealthProbe, wait_until_ready
from services.stack.processes import ChildProcess, Console, ProcessSpec, start

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

ROOT: Final = Path(__file__).resolve().parents[1]
LOOPBACK: Final = "127.0.0.1"
USER: Final = "bench"
START_TIMEOUT_S: Final = 180.0
STOP_GRACE_S: Final = 15.0
ZYGOTE_MODULE: Final = "services.execution.kernel.zygote"

# Variables that would point the services somewhere else than this run's.
_FOREIGN: Final = (
    "ASSISTANT_SERVICE_ADDR",
    "GATEWAY_JWKS_URL",
    "CLERK_FRONTEND_API",
    "GATEWAY_JWT_ISSUER",
    "GATEWAY_JWT_AUDIENCE",
    "REFLOW_INTERNAL_TOKEN_TTL_S",
)


class StackError(Exception):
    """A service did not start, or died during the run."""


@dataclass(frozen=True)
class Endpoints:
    """Where the benchmark client sends each public service's RPCs, and as whom."""

    notebook: str
    execution: str
    token: str
    through_gateway: bool
    execution_pid: int
    log: Path


@dataclass(frozen=True)
class Ports:
    notebook: int
    execution: int
    gateway_grpc: int
    gateway_http: int


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports free right now (held open together)."""
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            for _ in range(count)
        ]
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def service_env(
    ports: Ports, data_dir: Path, output_limit_kb: int, base: Mapping[str, str]
) -> dict[str, str]:
    """The environment all three services share (they read what is theirs)."""
    env = {k: v for k, v in base.items() if k not in _FOREIGN}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "REFLOW_INTERNAL_SECRET": secrets.token_hex(32),
            # The run may outlast the default five minutes of an operator's token.
            "REFLOW_INTERNAL_TOKEN_TTL_S": "3600",
            "NOTEBOOK_PORT": str(ports.notebook),
            "NOTEBOOK_STORE": "local",
            "NOTEBOOK_DATA_DIR": str(data_dir / "notebooks"),
            "EXECUTION_PORT": str(ports.execution),
            # High enough that 100,000 printed lines arrive whole.
            "EXECUTION_OUTPUT_LIMIT_KB": str(output_limit_kb),
            "GATEWAY_GRPC_PORT": str(ports.gateway_grpc),
            "GATEWAY_HTTP_PORT": str(ports.gateway_http),
            "GATEWAY_DATA_DIR": str(data_dir / "gateway"),
            "NOTEBOOK_SERVICE_ADDR": f"{LOOPBACK}:{ports.notebook}",
            "EXECUTION_SERVICE_ADDR": f"{LOOPBACK}:{ports.execution}",
        }
    )
    return env


def command_output(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """stdout of a short command (a token printer), stripped; raises on failure."""
    done = subprocess.run(
        argv, env=dict(env), cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise StackError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


@dataclass(frozen=True)
class Leftover:
    """A process the execution service started, identified beyond its pid."""

    pid: int
    start_ticks: str

    @classmethod
    def of(cls, pid: int) -> Leftover | None:
        ticks = _start_ticks(pid)
        return None if ticks is None else cls(pid, ticks)

    def kill(self) -> bool:
        """SIGKILL it if it is still the same process; True if it was alive."""
        if _start_ticks(self.pid) != self.start_ticks:
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.pid, signal.SIGKILL)
            return True
        return False


def _start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime), counted after the parenthesised command name.
    return stat.rpartition(")")[2].split()[19]


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (Linux /proc)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            children.extend(int(c) for c in (task / "children").read_text().split())
    return children


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, children first."""
    found: list[int] = []
    pending = child_pids(pid)
    while pending:
        child = pending.pop()
        found.append(child)
        pending.extend(child_pids(child))
    return found


def command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def zygote_pid(execution_pid: int) -> int | None:
    """The kernel zygote: the execution service's child running the zygote module."""
    for pid in child_pids(execution_pid):
        if ZYGOTE_MODULE in command_line(pid):
            return pid
    return None


class Services:
    """The started children, stopped front door first."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.children: list[ChildProcess] = []
        log.parent.mkdir(parents=True, exist_ok=True)
        self._stream = log.open("w", encoding="utf-8")
        self.console = Console(self._stream, colour=False)

    async def start(self, name: str, env: Mapping[str, str]) -> ChildProcess:
        argv = (sys.executable, "-m", f"services.{name}")
        child = await start(ProcessSpec(name, argv, env, ROOT), self.console)
        self.children.append(child)
        return child

    async def wait_ready(self, child: ChildProcess, address: str) -> None:
        probe = GrpcHealthProbe(address)
        ready = asyncio.create_task(wait_until_ready(probe, START_TIMEOUT_S))
        exited = asyncio.create_task(child.wait())
        try:
            await asyncio.wait((ready, exited), return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
        if exited.done() and not exited.cancelled():
            ready.cancel()
            raise StackError(
                f"{child.name} exited with code {child.returncode} while starting; "
                f"see {self.log}"
            )
        if not ready.result():
            raise StackError(f"{child.name} not serving after {START_TIMEOUT_S:.0f} s")

    def forked(self, execution_pid: int | None) -> list[Leftover]:
        """What the execution service started (the zygote, kernels), as of now."""
        if execution_pid is None:
            return []
        return [
            leftover
            for pid in descendants(execution_pid)
            if (leftover := Leftover.of(pid)) is not None
        ]

    async def stop(self, execution_pid: int | None) -> None:
        """Stop every child (last started first); kill what execution left behind."""
        forked = self.forked(execution_pid)
        for child in reversed(self.children):
            await child.stop(STOP_GRACE_S)
        for leftover in forked:
            if leftover.kill():
                self.console.line("bench", f"killed leftover process {leftover.pid}")
        self._stream.close()

    def kill_now(self, execution_pid: int | None) -> None:
        """SIGKILL everything, without waiting: the last resort at interpreter exit."""
        forked = self.forked(execution_pid)
        for child in self.children:
            child.kill()
        for leftover in forked:
            leftover.kill()


@asynccontextmanager
async def running_stack(
    *, direct: bool, output_limit_kb: int, log: Path
) -> AsyncIterator[Endpoints]:
    """Notebook, execution and gateway running; stopped (for sure) on the way out."""
    data_dir = Path(tempfile.mkdtemp(prefix="reflow-bench-"))
    notebook, execution, gateway_grpc, gateway_http = free_ports(4)
    ports = Ports(notebook, execution, gateway_grpc, gateway_http)
    env = service_env(ports, data_dir, output_limit_kb, os.environ)
    services = Services(log)
    execution_pid: int | None = None

    def last_resort() -> None:
        services.kill_now(execution_pid)

    # A second Ctrl-C ends the interpreter before the orderly stop is done.
    atexit.register(last_resort)
    try:
        started = [
            (await services.start("notebook", env), ports.notebook),
            (await services.start("execution", env), ports.execution),
            (await services.start("gateway", env), ports.gateway_grpc),
        ]
        execution_pid = started[1][0].pid
        await asyncio.gather(
            *(services.wait_ready(c, f"{LOOPBACK}:{port}") for c, port in started)
        )
        python = sys.executable
        if direct:
            token = command_output(
                (python, "-m", "services.shared.auth", "mint", USER), env
            )
            yield Endpoints(
                notebook=f"{LOOPBACK}:{ports.notebook}",
                execution=f"{LOOPBACK}:{ports.execution}",
                token=token,
                through_gateway=False,
                execution_pid=execution_pid,
                log=log,
            )
        else:
            devtoken = (python, "-m", "services.gateway.devtoken", USER)
            token = command_output(devtoken, env)
            gateway = f"{LOOPBACK}:{ports.gateway_grpc}"
            yield Endpoints(
                notebook=gateway,
                execution=gateway,
                token=token,
                through_gateway=True,
                execution_pid=execution_pid,
                log=log,
            )
    finally:
        await services.stop(execution_pid)
        atexit.unregister(last_resort)
        shutil.rmtree(data_dir, ignore_errors=True)
