"""The gateway's HTTP side: ``/ws/notebooks/{id}``, ``/healthz``, the web UI and,
in dev mode, the development issuer's ``/.well-known/jwks.json``.

The web UI: ``/`` is ``static/index.html``, ``/static/`` its stylesheet and
the ES module ``make web`` bundles from ``web/src/`` into ``static/dist/``,
and ``/ui/config`` tells the page what it cannot know before sign-in (whether
dev tokens work here). Nothing comes from a CDN. Cell outputs are untrusted,
so the page is served with a strict Content-Security-Policy (no inline
script, no foreign origins; sandboxed ``srcdoc`` frames for HTML). The one
allowance is a fresh nonce per page load for the ``<style>`` elements the
editor (CodeMirror) creates; the page reads it from a ``<meta>`` tag.

``create_app`` is a factory (no globals, no import-time state): everything
the routes need is passed in. The channels and the HTTP client it uses are
opened by ``__main__`` because the gRPC side shares them.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from starlette.applications import Starlette
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

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

STATIC_DIR: Final = Path(__file__).parent / "static"

STYLE_NONCE_SLOT: Final = "{{style_nonce}}"


def content_security_policy(style_nonce: str) -> str:
    """The page's policy, allowing ``<style>`` elements that carry ``style_nonce``."""
    return CONTENT_SECURITY_POLICY.replace(
        "style-src 'self'", f"style-src 'self' 'nonce-{style_nonce}'"
    )


CONTENT_SECURITY_POLICY: Final = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        # The WebSocket bridge, on this host (ws: or wss: as the page is served).
        "connect-src 'self' ws: wss:",
        # PNG and SVG outputs are shown as data: URLs in <img>, never inline.
        "img-src 'self' data:",
        # HTML outputs are srcdoc frames, sandboxed without allow-same-origin.
        "frame-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

PAGE_HEADERS: Final = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    # The page is tiny and changes with the repository: always revalidate.
    "cache-control": "no-cache",
}

DEV_TOKEN_COMMAND: Final = "make -s token USER=you"


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
        *ui_routes(identity.dev_mode),
    ]
    if identity.dev_issuer is not None:
        routes.append(key_set_route(identity.dev_issuer.jwks()))
    return Starlette(routes=routes)


async def healthz(request: Request) -> JSONResponse:
    """Liveness: the process answers. (GetHealth checks the services behind it.)"""
    return JSONResponse({"status": "ok"})


def ui_routes(dev_mode: bool) -> list[BaseRoute]:
    """The web UI: the page at ``/``, its assets, and ``/ui/config``."""
    config = {
        "devMode": dev_mode,
        "devTokenCommand": DEV_TOKEN_COMMAND if dev_mode else "",
    }

    async def page(request: Request) -> HTMLResponse:
        nonce = secrets.token_urlsafe(18)
        html = (STATIC_DIR / "index.html").read_text().replace(STYLE_NONCE_SLOT, nonce)
        headers = PAGE_HEADERS | {
            "content-security-policy": content_security_policy(nonce)
        }
        return HTMLResponse(html, headers=headers)

    async def ui_config(request: Request) -> JSONResponse:
        return JSONResponse(config, headers={"cache-control": "no-store"})

    return [
        Route("/", page, methods=["GET"]),
        Route("/ui/config", ui_config, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]


def key_set_route(jwks: Mapping[str, Any]) -> Route:
    """``GET /.well-known/jwks.json`` answering with ``jwks``."""
    body = dict(jwks)

    async def key_set(request: Request) -> JSONResponse:
        return JSONResponse(body, headers={"cache-control": "public, max-age=300"})

    return Route(DEV_JWKS_PATH, key_set, methods=["GET"])
