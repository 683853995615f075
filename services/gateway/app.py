"""The gateway's HTTP side: ``/ws/notebooks/{id}``, ``/healthz`` and, in dev mode,
the development issuer's ``/.well-known/jwks.json``.

``create_app`` is a factory (no globals, no import-time state): everything
the routes need is passed in. The channels and the HTTP client it uses are
opened by ``__main__`` because the gRPC side shares them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute

from services.gateway.auth import DEV_JWKS_PATH
from services.gateway.ws import NotebookSockets

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.requests import Request

    from services.gateway.auth import Identity
    from services.gateway.clients import Downstreams
    from services.gateway.config import WebSocketSettings
    from services.shared.auth import InternalTokens

WEBSOCKET_PATH = "/ws/notebooks/{notebook_id}"


def create_app(
    identity: Identity,
    downstreams: Downstreams,
    tokens: InternalTokens,
    settings: WebSocketSettings,
) -> Starlette:
    """The ASGI app of the gateway's HTTP port."""
    sockets = NotebookSockets(identity.authenticator, downstreams, tokens, settings)
    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        WebSocketRoute(WEBSOCKET_PATH, sockets.serve),
    ]
    if identity.dev_issuer is not None:
        routes.append(key_set_route(identity.dev_issuer.jwks()))
    return Starlette(routes=routes)


async def healthz(request: Request) -> JSONResponse:
    """Liveness: the process answers. (GetHealth checks the services behind it.)"""
    return JSONResponse({"status": "ok"})


def key_set_route(jwks: Mapping[str, Any]) -> Route:
    """``GET /.well-known/jwks.json`` answering with ``jwks``."""
    body = dict(jwks)

    async def key_set(request: Request) -> JSONResponse:
        return JSONResponse(body, headers={"cache-control": "public, max-age=300"})

    return Route(DEV_JWKS_PATH, key_set, methods=["GET"])
