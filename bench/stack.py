"""The real services and Envoy, started as processes for a run, and stopped for sure.

``running_stack`` starts the notebook, execution and gateway services exactly
as ``make run`` does (``python -m services.<name>``, each in a session of its
own, through ``services.stack.processes``), on free loopback ports, with a
fresh temporary data directory and internal secret, and their logs in a
file rather than on the terminal. In front of them it starts the real Envoy
(``services.stack.plan.envoy_binary``, the flags ``make run`` gives it) with
the configuration ``services.stack.envoy_config`` renders for these ports,
its admin interface on a unix socket in the run's data directory. For the
throughput floor the bench adds, to its own copy of that configuration only,
a route and a cluster to a do-nothing gRPC service (``bench.idle_service``),
shaped like the gateway's. It waits for each service to answer gRPC health
and for Envoy to be ready and to answer gRPC health through its port, then
yields where to send the public RPCs and the token to send:

* ``envoy`` (the default): Envoy's port, as users reach the stack, with a
  development user token from ``services.gateway.devtoken``;
* ``gateway``: the gateway's gRPC port, with the same kind of token;
* ``direct``: the notebook and execution services' own ports, with an
  internal token from ``python -m services.shared.auth mint``.

On the way out (an exception, Ctrl-C, or the end of the run) every process
is stopped front door first (Envoy, then the services), and anything the
execution service forked that outlived it (the zygote, kernels) is killed.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import copy
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
from typing import TYPE_CHECKING, Any, Final, Literal

import yaml

from bench.idle_service import SERVICE as IDLE_SERVICE
from services.stack.envoy_config import Address, EnvoyOptions, render
from services.stack.plan import DESCRIPTOR, envoy_binary
from services.stack.probes import (
    GrpcHealthProbe,
    HttpProbe,
    Probe,
    wait_until_ready,
)
from services.stack.processes import ChildProcess, Console, ProcessSpec, start

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

ROOT: Final = Path(__file__).resolve().parents[1]
LOOPBACK: Final = "127.0.0.1"
USER: Final = "bench"
START_TIMEOUT_S: Final = 180.0
STOP_GRACE_S: Final = 15.0
ZYGOTE_MODULE: Final = "services.execution.kernel.zygote"
IDLE_CLUSTER: Final = "bench_idle"

Route = Literal["envoy", "gateway", "direct"]
"""Where the client's public RPCs go: Envoy, the gateway, or the services."""

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
    execution_pid: int
    log: Path
    route: Route
    # The do-nothing service, reached the same way (through Envoy, or directly).
    idle: str


@dataclass(frozen=True)
class Ports:
    notebook: int
    execution: int
    gateway_grpc: int
    gateway_http: int
    envoy: int
    idle: int


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


def envoy_config(ports: Ports, admin: Path) -> str:
    """``make run``'s Envoy configuration for these ports, plus the idle service.

    The do-nothing service gets a route and a cluster copied from the
    gateway's gRPC ones (same load balancing, health checks, HTTP/2
    options), so its calls cross Envoy exactly as a public RPC does.
    """
    options = EnvoyOptions(
        listen=Address(LOOPBACK, ports.envoy),
        admin=str(admin),
        gateway_grpc=Address(LOOPBACK, ports.gateway_grpc),
        gateway_http=Address(LOOPBACK, ports.gateway_http),
        descriptor=str(DESCRIPTOR),
    )
    config: dict[str, Any] = yaml.safe_load(render(options))
    resources = config["static_resources"]
    manager = resources["listeners"][0]["filter_chains"][0]["filters"][0]
    host = manager["typed_config"]["route_config"]["virtual_hosts"][0]
    grpc_route = next(r for r in host["routes"] if "headers" in r["match"])
    idle_route = copy.deepcopy(grpc_route)
    idle_route["match"] = {"prefix": f"/{IDLE_SERVICE}/"}
    idle_route["route"]["cluster"] = IDLE_CLUSTER
    host["routes"].insert(0, idle_route)
    gateway = next(c for c in resources["clusters"] if c["name"] == "gateway_grpc")
    idle = copy.deepcopy(gateway)
    idle["name"] = idle["load_assignment"]["cluster_name"] = IDLE_CLUSTER
    endpoint = idle["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    endpoint["endpoint"]["address"]["socket_address"] = {
        "address": LOOPBACK,
        "port_value": ports.idle,
    }
    resources["clusters"].append(idle)
    return yaml.safe_dump(config, sort_keys=False)


def envoy_argv(config: Path) -> tuple[str, ...]:
    """Envoy's command line, with the flags ``services.stack.plan`` gives it."""
    return (
        envoy_binary(),
        "-c",
        str(config),
        "--disable-hot-restart",
        "--file-flush-interval-msec",
        "500",
        "--log-level",
        "warning",
    )


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

    async def start(
        self, name: str, env: Mapping[str, str], *argv: str
    ) -> ChildProcess:
        """``python -m services.<name>``, or ``argv`` when given."""
        command = argv or (sys.executable, "-m", f"services.{name}")
        child = await start(ProcessSpec(name, command, env, ROOT), self.console)
        self.children.append(child)
        return child

    async def start_logging_to(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], path: Path
    ) -> ChildProcess:
        """A child whose output goes straight to ``path``, not through this process.

        Envoy writes an access log line per request: relayed, those lines
        would be read on the event loop that times the requests.
        """
        with path.open("wb") as output:
            process = await asyncio.create_subprocess_exec(
                *argv,
                env=dict(env),
                cwd=ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        self.console.line("bench", f"started {name} (pid {process.pid}), log in {path}")
        relay = asyncio.create_task(_exited(process))
        child = ChildProcess(ProcessSpec(name, argv, env, ROOT), process, relay)
        self.children.append(child)
        return child

    async def wait_ready(self, child: ChildProcess, *probes: Probe) -> None:
        for probe in probes:
            await self._wait_for(child, probe)

    async def _wait_for(self, child: ChildProcess, probe: Probe) -> None:
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
            raise StackError(
                f"{child.name}: no {probe.describe()} after {START_TIMEOUT_S:.0f} s"
            )

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


async def _exited(process: asyncio.subprocess.Process) -> None:
    await process.wait()


@asynccontextmanager
async def running_stack(
    *, route: Route, output_limit_kb: int, log: Path
) -> AsyncIterator[Endpoints]:
    """The services, the idle service and Envoy running; stopped for sure after."""
    data_dir = Path(tempfile.mkdtemp(prefix="reflow-bench-"))
    ports = Ports(*free_ports(6))
    env = service_env(ports, data_dir, output_limit_kb, os.environ)
    envoy_dir = data_dir / "envoy"
    envoy_dir.mkdir()
    admin = envoy_dir.absolute() / "admin.sock"
    config = envoy_dir / "envoy.yaml"
    config.write_text(envoy_config(ports, admin))
    services = Services(log)
    execution_pid: int | None = None

    def last_resort() -> None:
        services.kill_now(execution_pid)

    # A second Ctrl-C ends the interpreter before the orderly stop is done.
    atexit.register(last_resort)
    try:
        python = sys.executable
        idle_argv = (python, "-m", "bench.idle_service", str(ports.idle))
        started = [
            (await services.start("notebook", env), ports.notebook),
            (await services.start("execution", env), ports.execution),
            (await services.start("gateway", env), ports.gateway_grpc),
            (await services.start("idle", env, *idle_argv), ports.idle),
        ]
        execution_pid = started[1][0].pid
        await asyncio.gather(
            *(
                services.wait_ready(c, GrpcHealthProbe(f"{LOOPBACK}:{port}"))
                for c, port in started
            )
        )
        envoy = await services.start_logging_to(
            "envoy", envoy_argv(config), env, log.with_name("envoy.log")
        )
        front = f"{LOOPBACK}:{ports.envoy}"
        await services.wait_ready(
            envoy, HttpProbe.unix(admin, "/ready"), GrpcHealthProbe(front)
        )
        mint: tuple[str, ...]
        if route == "direct":
            mint = (python, "-m", "services.shared.auth", "mint", USER)
            notebook = f"{LOOPBACK}:{ports.notebook}"
            execution = f"{LOOPBACK}:{ports.execution}"
        else:
            mint = (python, "-m", "services.gateway.devtoken", USER)
            notebook = execution = (
                front if route == "envoy" else f"{LOOPBACK}:{ports.gateway_grpc}"
            )
        yield Endpoints(
            notebook=notebook,
            execution=execution,
            token=command_output(mint, env),
            execution_pid=execution_pid,
            log=log,
            route=route,
            idle=front if route == "envoy" else f"{LOOPBACK}:{ports.idle}",
        )
    finally:
        await services.stop(execution_pid)
        atexit.unregister(last_resort)
        shutil.rmtree(data_dir, ignore_errors=True)
