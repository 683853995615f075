"""Wiring of the gateway's two servers: gRPC (forwarding + GatewayService) and HTTP.

The gRPC server comes from ``create_server`` like every service's (error
mapping, health, reflection), but without its internal-token check: callers
of the gateway hold user JWTs, which the forwarding handlers and
``GetCurrentUser`` verify themselves, and health, reflection and
``GetHealth`` need no token at all. Reflection lists the public services the
gateway forwards, ``GatewayService`` and health, so ``grpcurl list`` and
``describe`` work against the gateway (and through Envoy).

The HTTP server is uvicorn serving the Starlette app, on a socket bound
beforehand (so a busy port fails loudly before anything starts, and tests
know their port) and with uvicorn's own signal handling turned off, because
``__main__`` decides when both servers stop.
"""

from __future__ import annotations

import contextlib
import socket
from typing import TYPE_CHECKING, Final

import uvicorn

from reflow.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from services.gateway.forward import Forwarder
from services.gateway.service import GatewayServicer
from services.shared.grpc_server import create_server

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import grpc
    from starlette.applications import Starlette

    from services.gateway.auth import Identity
    from services.gateway.clients import Downstreams
    from services.shared.auth import InternalTokens

GATEWAY_SERVICE: Final = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"]

MAX_WEBSOCKET_MESSAGE_BYTES: Final = 4 * 1024 * 1024
"""A command carries at most a cell's code (1 MiB by default) and some fields."""


def build_grpc_server(
    identity: Identity,
    tokens: InternalTokens,
    downstreams: Downstreams,
    address: str,
    unary_timeout_s: float = 60.0,
    health_timeout_s: float = 1.0,
) -> tuple[grpc.aio.Server, int]:
    """Build (unstarted) and bind the gateway's gRPC server."""
    forwarder = Forwarder(identity.authenticator, tokens, unary_timeout_s)
    gateway = GatewayServicer(identity, downstreams, health_timeout_s)
    add_servicers: list[Callable[[grpc.aio.Server], None]] = [
        lambda s: gateway_pb2_grpc.add_GatewayServiceServicer_to_server(gateway, s)
    ]
    service_names = [GATEWAY_SERVICE.full_name]
    for downstream in downstreams.all():
        add_servicers.append(_adder(forwarder.handler(downstream)))
        service_names.append(downstream.service.full_name)
    return create_server(add_servicers, address, service_names)


def _adder(handler: grpc.GenericRpcHandler) -> Callable[[grpc.aio.Server], None]:
    def add(server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((handler,))

    return add


class HttpServer(uvicorn.Server):
    """uvicorn without its signal handlers: the caller stops it (``should_exit``)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def build_http_server(app: Starlette, grace_s: float = 5.0) -> HttpServer:
    """A uvicorn server for ``app``; run it with ``serve(sockets=[...])``."""
    config = uvicorn.Config(
        app,
        lifespan="off",
        ws="websockets-sansio",
        ws_max_size=MAX_WEBSOCKET_MESSAGE_BYTES,
        # Logging is services.shared.logs' business: uvicorn's loggers just
        # propagate to the root handler it installed.
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=int(grace_s),
    )
    return HttpServer(config)


def bind_http_socket(port: int, host: str = "") -> socket.socket:
    """A listening TCP socket on ``port`` (0: any free one); all interfaces
    (both families where possible) when ``host`` is empty."""
    if not host and socket.has_dualstack_ipv6():
        return socket.create_server(
            ("", port), family=socket.AF_INET6, dualstack_ipv6=True
        )
    return socket.create_server((host, port))


def bound_port(sock: socket.socket) -> int:
    """The port ``sock`` is bound to."""
    port: int = sock.getsockname()[1]
    return port
