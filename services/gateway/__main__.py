"""Entry point: python -m services.gateway

Runs the gRPC server (``serve``, which owns SIGTERM/SIGINT and drains RPCs
gracefully) and uvicorn in one TaskGroup. When either stops, the other is
told to: after a signal the gRPC side drains first, then uvicorn closes its
sockets (code 1012) and exits; if uvicorn fails, the gRPC server is stopped.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from services.gateway.app import create_app
from services.gateway.auth import DEV_JWKS_PATH, open_identity
from services.gateway.clients import open_downstreams
from services.gateway.config import Settings
from services.gateway.server import (
    bind_http_socket,
    bound_port,
    build_grpc_server,
    build_http_server,
)
from services.shared import logs
from services.shared.auth import InternalTokens
from services.shared.config import listen_address, run_service
from services.shared.grpc_server import serve
from services.shared.observability import start_observability

if TYPE_CHECKING:
    import socket

    import grpc

    from services.gateway.server import HttpServer

logger = logging.getLogger(__name__)


async def main() -> None:
    settings = Settings.from_env()
    logs.configure("gateway", settings.log_level, settings.log_format)
    start_observability("gateway", settings.listen_host, settings.metrics_port)
    tokens = InternalTokens(settings.auth.secret, settings.auth.ttl_s)
    async with (
        open_identity(settings.identity) as identity,
        open_downstreams(settings) as downstreams,
    ):
        grpc_server, grpc_port = build_grpc_server(
            identity,
            tokens,
            downstreams,
            listen_address(settings.listen_host, settings.grpc_port),
            settings.unary_timeout_s,
            settings.health_timeout_s,
        )
        http_socket = bind_http_socket(settings.http_port, settings.listen_host)
        app = create_app(identity, downstreams, tokens, settings.websocket)
        http_server = build_http_server(app)
        logger.info(
            "gateway listening: gRPC on port %d, HTTP (WebSocket, /healthz) on port %d",
            grpc_port,
            bound_port(http_socket),
        )
        logger.info(
            "forwarding to notebook at %s, execution at %s, assistant at %s",
            settings.notebook_service_addr,
            settings.execution_service_addr,
            settings.assistant_service_addr or "(not configured)",
        )
        if identity.dev_mode:
            logger.warning(
                "DEV MODE: development tokens only; keys at http://localhost:%d%s",
                bound_port(http_socket),
                DEV_JWKS_PATH,
            )
        await run_both(grpc_server, http_server, http_socket)


async def run_both(
    grpc_server: grpc.aio.Server, http_server: HttpServer, http_socket: socket.socket
) -> None:
    """Serve both until a signal (or either one failing), then stop both."""
    async with asyncio.TaskGroup() as tasks:
        grpc_task = tasks.create_task(serve(grpc_server))
        http_task = tasks.create_task(http_server.serve(sockets=[http_socket]))
        await asyncio.wait((grpc_task, http_task), return_when=asyncio.FIRST_COMPLETED)
        if http_task.done():
            logger.error("the HTTP server stopped; stopping the gRPC server")
            grpc_task.cancel()  # serve() stops the server when cancelled
        http_server.should_exit = True
    logger.info("gateway stopped")


if __name__ == "__main__":
    run_service("gateway", main)
