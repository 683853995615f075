"""Prometheus metrics every service shares, and the HTTP listener that serves them.

Each service serves ``/metrics`` (the Prometheus text format, from
``prometheus-client``'s default registry) on a port of its own, set by
``<SERVICE>_METRICS_PORT``: unset means no listener (a service started by
hand or by a test claims no port it was not given), 0 any free port, and
``make run`` and ``docker-compose.yml`` give each service a fixed one. The
listener binds ``REFLOW_LISTEN_HOST`` like the gRPC server.

The RPC metrics follow the names of go-grpc-prometheus, which dashboards
already know: ``grpc_server_handled_total`` and
``grpc_server_handling_seconds`` by service, method and status code, fed by
the shared server interceptor for every RPC of every service. A server
stream's time is the whole stream's. Service-specific metrics live beside
the code they count (``services.execution.metrics``,
``services.notebook.store.metrics``, ``services.gateway.metrics``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from prometheus_client import Counter, Histogram, start_http_server

if TYPE_CHECKING:
    from services.shared.config import EnvReader

RPCS_HANDLED: Final = Counter(
    "grpc_server_handled",
    "RPCs completed by the server, by method and status code.",
    ("grpc_service", "grpc_method", "grpc_code"),
)
RPC_SECONDS: Final = Histogram(
    "grpc_server_handling_seconds",
    "Time from an RPC's arrival to its status (a stream's whole life).",
    ("grpc_service", "grpc_method", "grpc_code"),
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
             2.5, 5, 10, 30, 60, 300),
)  # fmt: skip


def record_rpc(method: str, code: str, seconds: float) -> None:
    """Count one finished RPC (``method`` as grpc names it: ``/pkg.Service/Method``)."""
    children = _children.get((method, code))
    if children is None:
        children = _children[method, code] = _children_for(method, code)
    count, timing = children
    count.inc()
    timing.observe(seconds)


# labels() takes a lock and builds a key on every call: a few µs each time,
# on every RPC. Methods and codes are few, so their children are kept.
_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}


def _children_for(method: str, code: str) -> tuple[Counter, Histogram]:
    service, _, name = method.lstrip("/").rpartition("/")
    return (
        RPCS_HANDLED.labels(service, name, code),
        RPC_SECONDS.labels(service, name, code),
    )


def metrics_port(read: EnvReader) -> int | None:
    """``<PREFIX>METRICS_PORT`` from a service's reader; None when unset."""
    if read.optional_text("METRICS_PORT") is None:
        return None
    return read.integer("METRICS_PORT", 0, minimum=0)


def serve_metrics(host: str, port: int) -> int:
    """Serve ``/metrics`` on ``host:port`` from a daemon thread; the bound port.

    prometheus-client's own listener: a thread of its own, so a scrape never
    waits for the service's event loop, nor the loop for a scrape.
    """
    server, _thread = start_http_server(port, addr=host)
    return int(server.server_port)
