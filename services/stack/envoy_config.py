"""Envoy's configuration, rendered from ``envoy.yaml.tmpl`` beside this module.

Envoy's YAML has no environment substitution, so the ports, addresses and
allowed CORS origins are filled in here: the stack runner renders a copy with
the ports it was given, and the repository's ``envoy.yaml`` is the rendering
with the defaults (``make envoy-config``; a test keeps it current). The
template holds the reasoning; this module only substitutes values, each
checked so that nothing it writes can change the YAML's structure.

    python -m services.stack.envoy_config [--output envoy.yaml] [--http-port 8080] ...
"""

from __future__ import annotations

import argparse
import json
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Sequence

TEMPLATE: Final = Path(__file__).with_name("envoy.yaml.tmpl")
INTERNAL_LISTENER: Final = Path(__file__).with_name("internal_listener.yaml.tmpl")
INTERNAL_CLUSTER: Final = Path(__file__).with_name("internal_cluster.yaml.tmpl")

PUBLIC_SERVICES: Final = (
    "reflow.notebook.v1.NotebookService",
    "reflow.execution.v1.ExecutionService",
    "reflow.assistant.v1.AssistantService",
    "reflow.gateway.v1.GatewayService",
)
"""What the transcoder maps to REST: the services the gateway forwards or serves."""

DEFAULT_ORIGINS: Final = ("http://localhost:5173", "http://127.0.0.1:5173")
"""A front-end dev server (Vite's default port) calling the stack from another
origin. The UI served through Envoy itself is same-origin and needs no CORS."""

_TYPES = "type.googleapis.com/envoy."
_HOST = re.compile(r"^[A-Za-z0-9.:_-]+$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+$")


class Address(NamedTuple):
    """A host and port, as Envoy's socket_address wants them."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Address:
        """``host:port`` (``[v6]:port`` too) -> Address; ValueError if malformed."""
        host, sep, port = text.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not port.isdigit():
            raise ValueError(f"{text!r} is not HOST:PORT")
        return cls(_checked_host(host), _checked_port(int(port)))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class InternalService:
    """A service run as several replicas, which the others reach through Envoy.

    Envoy listens for it at ``listen`` (its ``*_SERVICE_ADDR``) and spreads
    the calls over ``replicas`` by the notebook they are about.
    """

    name: str
    listen: Address
    replicas: tuple[Address, ...]


@dataclass(frozen=True)
class EnvoyOptions:
    """Everything the rendered configuration varies by."""

    listen: Address = Address("127.0.0.1", 8080)
    # A TCP address, or the path of a unix socket (mode 0600): the admin
    # interface can stop Envoy, so `make run` keeps it where no kernel sees.
    admin: Address | str = Address("127.0.0.1", 9901)
    gateway_grpc: Address = Address("127.0.0.1", 50050)
    gateway_http: Address = Address("127.0.0.1", 8000)
    # Relative paths are relative to Envoy's working directory.
    descriptor: str = "protos/reflow.binpb"
    # Exact origins; "*" allows any origin.
    allowed_origins: tuple[str, ...] = DEFAULT_ORIGINS
    # Where Prometheus scrapes Envoy's own stats (GET /stats/prometheus).
    metrics: Address = Address("127.0.0.1", 9401)
    # An OTLP/gRPC collector: Envoy then traces every request (a span of its
    # own, W3C trace context to the gateway). None: no tracer; Envoy passes
    # a client's traceparent through untouched.
    otlp_collector: Address | None = None
    # Services with replicas; none (one process each) means no internal hop.
    internal: tuple[InternalService, ...] = ()


def render(options: EnvoyOptions) -> str:
    """The YAML configuration for ``options``; ValueError for a bad value."""
    values = {
        "header": f"# Values: {_describe(options)}",
        "admin_address": _admin_address(options.admin),
        "listen_host": _checked_host(options.listen.host),
        "http_port": _checked_port(options.listen.port),
        "gateway_grpc_host": _checked_host(options.gateway_grpc.host),
        "gateway_grpc_port": _checked_port(options.gateway_grpc.port),
        "gateway_http_host": _checked_host(options.gateway_http.host),
        "gateway_http_port": _checked_port(options.gateway_http.port),
        "descriptor": json.dumps(options.descriptor),
        "services": json.dumps(list(PUBLIC_SERVICES)),
        "allowed_origins": _origin_matchers(options.allowed_origins),
        "metrics_host": _checked_host(options.metrics.host),
        "metrics_port": _checked_port(options.metrics.port),
        "tracing": _tracing(options.otlp_collector),
        "tracing_cluster": _tracing_cluster(options.otlp_collector),
        "internal_listeners": _fill(INTERNAL_LISTENER, options.internal),
        "internal_clusters": _fill(INTERNAL_CLUSTER, options.internal),
    }
    return string.Template(TEMPLATE.read_text()).substitute(values)


def _tracing(collector: Address | None) -> str:
    """The public listener's OpenTelemetry tracer, or nothing."""
    if collector is None:
        return ""
    return f"""
                # Every request is a span of Envoy's, exported to the OTLP
                # collector; the client's traceparent is its parent.
                tracing:
                  provider:
                    name: envoy.tracers.opentelemetry
                    typed_config:
                      "@type": {_TYPES}config.trace.v3.OpenTelemetryConfig
                      grpc_service:
                        envoy_grpc: {{cluster_name: otlp_collector}}
                        timeout: 2s
                      service_name: reflow-envoy"""


def _tracing_cluster(collector: Address | None) -> str:
    """The OTLP collector's cluster, when Envoy traces."""
    if collector is None:
        return ""
    host, port = _checked_host(collector.host), _checked_port(collector.port)
    return f"""
    # The OTLP/gRPC collector Envoy sends its spans to.
    - name: otlp_collector
      type: STRICT_DNS
      connect_timeout: 2s
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": {_TYPES}extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config: {{http2_protocol_options: {{}}}}
      load_assignment:
        cluster_name: otlp_collector
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: {{address: {host}, port_value: {port}}}"""


def _fill(template: Path, services: Sequence[InternalService]) -> str:
    """``template`` rendered once per replicated service, one after another."""
    text = string.Template(template.read_text())
    return "".join(
        text.substitute(
            service=_checked_name(service.name),
            service_upper=service.name.upper(),
            listen_host=_checked_host(service.listen.host),
            listen_port=_checked_port(service.listen.port),
            endpoints=_endpoints(service.replicas),
        )
        for service in services
    )


def _endpoints(replicas: Sequence[Address]) -> str:
    """A YAML flow list of Envoy lb_endpoints, one per replica."""
    if not replicas:
        raise ValueError("a replicated service needs at least one replica")
    return json.dumps(
        [
            {
                "endpoint": {
                    "address": {
                        "socket_address": {
                            "address": _checked_host(replica.host),
                            "port_value": _checked_port(replica.port),
                        }
                    }
                }
            }
            for replica in replicas
        ]
    )


def _checked_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"{name!r} is not a service name")
    return name


def _admin_address(admin: Address | str) -> str:
    if isinstance(admin, str):
        # 384 is 0o600: only the user who runs Envoy may connect.
        return f"pipe: {{path: {json.dumps(admin)}, mode: 384}}"
    host, port = _checked_host(admin.host), _checked_port(admin.port)
    return f"socket_address: {{address: {host}, port_value: {port}}}"


def parse_admin(text: str) -> Address | str:
    """``--admin``: HOST:PORT, or unix:PATH for a unix socket."""
    if text.startswith("unix:"):
        return text.removeprefix("unix:")
    return Address.parse(text)


def parse_origins(text: str) -> tuple[str, ...]:
    """A comma-separated list of origins, as REFLOW_CORS_ORIGINS holds them."""
    return tuple(origin.strip() for origin in text.split(",") if origin.strip())


def _describe(options: EnvoyOptions) -> str:
    return (
        f"listen {options.listen}, admin {options.admin}, "
        f"gateway gRPC {options.gateway_grpc}, gateway HTTP {options.gateway_http}, "
        f"metrics {options.metrics}"
    )


def _origin_matchers(origins: Sequence[str]) -> str:
    """A YAML flow list of Envoy string matchers, one per allowed origin."""
    matchers: list[dict[str, object]] = []
    for origin in origins:
        if origin == "*":
            matchers.append({"safe_regex": {"regex": ".*"}})
        elif _ORIGIN.match(origin):
            matchers.append({"exact": origin})
        else:
            raise ValueError(
                f"CORS origin {origin!r} is not '*' or scheme://host[:port]"
            )
    # JSON is YAML: quoted strings cannot break out of the flow list.
    return json.dumps(matchers)


def _checked_host(host: str) -> str:
    if not _HOST.match(host):
        raise ValueError(f"{host!r} is not a host name or IP address")
    return host


def _checked_port(port: int) -> int:
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    return port


def main(argv: Sequence[str] | None = None) -> int:
    """Render the configuration to a file or stdout."""
    defaults = EnvoyOptions()
    parser = argparse.ArgumentParser(
        prog="python -m services.stack.envoy_config",
        description="Render Envoy's configuration for the Reflow stack.",
    )
    parser.add_argument("--output", type=Path, help="file to write (default: stdout)")
    parser.add_argument("--listen", type=Address.parse, default=defaults.listen)
    parser.add_argument("--admin", type=parse_admin, default=defaults.admin)
    parser.add_argument(
        "--gateway-grpc", type=Address.parse, default=defaults.gateway_grpc
    )
    parser.add_argument(
        "--gateway-http", type=Address.parse, default=defaults.gateway_http
    )
    parser.add_argument("--descriptor", default=defaults.descriptor)
    parser.add_argument(
        "--metrics",
        type=Address.parse,
        default=defaults.metrics,
        help="where GET /stats/prometheus is served",
    )
    parser.add_argument(
        "--otlp-collector",
        type=Address.parse,
        default=None,
        help="an OTLP/gRPC collector: Envoy traces requests and exports there",
    )
    parser.add_argument(
        "--allowed-origins",
        type=parse_origins,
        default=defaults.allowed_origins,
        help="comma-separated origins ('*' for any)",
    )
    args = parser.parse_args(argv)
    options = EnvoyOptions(
        listen=args.listen,
        admin=args.admin,
        gateway_grpc=args.gateway_grpc,
        gateway_http=args.gateway_http,
        descriptor=args.descriptor,
        allowed_origins=args.allowed_origins,
        metrics=args.metrics,
        otlp_collector=args.otlp_collector,
    )
    text = render(options)
    if args.output is None:
        print(text, end="")
    else:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
