"""The stack's settings, read once from the environment.

The services' ports are read from the very variables the services read
(``NOTEBOOK_PORT``, ``GATEWAY_GRPC_PORT`` ...), with the same defaults, so one
exported variable moves a service and everything that calls it. The metrics
ports (``*_METRICS_PORT``) differ in their defaults only: a service started
alone serves no metrics unless told where, the stack gives each its own
(9450-9453, and Envoy's stats 9401). What is the
stack's own lives under ``REFLOW_``: Envoy's public and metrics ports, the
data directory every service keeps its files under, the CORS origins, and how
long to wait for the stack to start and stop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.shared.config import ConfigError, EnvReader
from services.shared.tracing import otlp_grpc_collector
from services.stack.envoy_config import DEFAULT_ORIGINS, parse_origins

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path


@dataclass(frozen=True)
class Ports:
    """Where each process listens."""

    http: int
    notebook: int
    execution: int
    assistant: int
    gateway_grpc: int
    gateway_http: int
    metrics: MetricsPorts

    def named(self) -> dict[str, int]:
        """Each port under the variable that sets it, for messages."""
        return {
            "REFLOW_HTTP_PORT": self.http,
            "NOTEBOOK_PORT": self.notebook,
            "EXECUTION_PORT": self.execution,
            "ASSISTANT_PORT": self.assistant,
            "GATEWAY_GRPC_PORT": self.gateway_grpc,
            "GATEWAY_HTTP_PORT": self.gateway_http,
            **self.metrics.named(),
        }


@dataclass(frozen=True)
class MetricsPorts:
    """Where each process serves its Prometheus metrics."""

    envoy: int
    notebook: int
    execution: int
    assistant: int
    gateway: int

    def named(self) -> dict[str, int]:
        """Each port under the variable that sets it (the services' own ones)."""
        return {
            "REFLOW_ENVOY_METRICS_PORT": self.envoy,
            "NOTEBOOK_METRICS_PORT": self.notebook,
            "EXECUTION_METRICS_PORT": self.execution,
            "ASSISTANT_METRICS_PORT": self.assistant,
            "GATEWAY_METRICS_PORT": self.gateway,
        }


@dataclass(frozen=True)
class StackSettings:
    """Everything ``python -m services.stack`` is configured by."""

    ports: Ports
    listen_host: str
    public_host: str
    data_dir: Path
    allowed_origins: tuple[str, ...]
    start_timeout_s: float
    stop_timeout_s: float
    envoy_log_level: str
    dev_user: str
    # The OTLP/gRPC collector the services export spans to (OTEL_*), which
    # Envoy then exports its own to; None when spans are not exported.
    otlp_collector: tuple[str, int] | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> StackSettings:
        read = EnvReader(env, prefix="REFLOW_")
        unprefixed = EnvReader(env, prefix="")
        ports = Ports(
            http=_port(unprefixed, "REFLOW_HTTP_PORT", 8080),
            notebook=_port(unprefixed, "NOTEBOOK_PORT", 50051),
            execution=_port(unprefixed, "EXECUTION_PORT", 50052),
            assistant=_port(unprefixed, "ASSISTANT_PORT", 50053),
            gateway_grpc=_port(unprefixed, "GATEWAY_GRPC_PORT", 50050),
            gateway_http=_port(unprefixed, "GATEWAY_HTTP_PORT", 8000),
            metrics=MetricsPorts(
                envoy=_port(unprefixed, "REFLOW_ENVOY_METRICS_PORT", 9401),
                notebook=_port(unprefixed, "NOTEBOOK_METRICS_PORT", 9451),
                execution=_port(unprefixed, "EXECUTION_METRICS_PORT", 9452),
                assistant=_port(unprefixed, "ASSISTANT_METRICS_PORT", 9453),
                gateway=_port(unprefixed, "GATEWAY_METRICS_PORT", 9450),
            ),
        )
        _check_distinct(ports)
        return cls(
            ports=ports,
            # Loopback by default: the stack runs user code for whoever holds
            # a token; REFLOW_HTTP_HOST=0.0.0.0 opens it to the network.
            listen_host=read.text("HTTP_HOST", "127.0.0.1"),
            public_host=read.text("PUBLIC_HOST", "localhost"),
            data_dir=read.path("DATA_DIR", "data"),
            allowed_origins=parse_origins(
                read.text("CORS_ORIGINS", ",".join(DEFAULT_ORIGINS))
            ),
            start_timeout_s=read.number("STACK_START_TIMEOUT_S", 90.0),
            stop_timeout_s=read.number("STACK_STOP_TIMEOUT_S", 10.0),
            envoy_log_level=read.choice(
                "ENVOY_LOG_LEVEL",
                ("trace", "debug", "info", "warning", "error", "critical", "off"),
                "warning",
            ),
            dev_user=read.text("DEV_USER", "dev-user"),
            otlp_collector=otlp_grpc_collector(env),
        )

    @property
    def url(self) -> str:
        """Where a person points a browser, curl or grpcurl."""
        return f"http://{self.public_host}:{self.ports.http}"


def _port(read: EnvReader, name: str, default: int) -> int:
    port = read.integer(name, default, minimum=1)
    if port > 65535:
        raise ConfigError(f"{name}={port} is not a port number")
    return port


def _check_distinct(ports: Ports) -> None:
    seen: dict[int, str] = {}
    for name, port in ports.named().items():
        if port in seen:
            raise ConfigError(f"{name} and {seen[port]} are both {port}")
        seen[port] = name
