"""The WebSocket endpoint ``/ws/notebooks/{id}``: validate the connection, then pump.

Browsers cannot put headers on a WebSocket handshake, so the token comes in
the first message instead: ``{"type": "auth", "token": "<user JWT>"}``,
within ``auth_timeout_s`` of the socket opening. Anything else closes the
socket with 4401 and a reason saying what was wrong (no auth message in
time, a first message that is not one, a token that does not verify), or
1013 when the signing keys cannot be fetched right now. The token is checked
once, as a cookie on an HTTP upgrade would be; the socket outlives it.

An accepted socket is handed to ``NotebookBridge`` (``bridge.py``), which
pumps messages until it ends. Keeping the two apart (after marimo's
connection validator and message loop) keeps either easy to read and test.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Final

from services.gateway import metrics
from services.gateway.bridge import INTERNAL_ERROR, NotebookBridge, close_socket
from services.gateway.clients import UserCalls
from services.shared.errors import Unauthenticated, Unavailable
from services.shared.patterns import ID
from services.shared.validation import ID_RULE

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

    from services.gateway.auth import UserAuthenticator
    from services.gateway.clients import Downstreams
    from services.gateway.config import WebSocketSettings
    from services.shared.auth import InternalTokens

logger = logging.getLogger(__name__)

UNAUTHORIZED: Final = 4401
"""Close code for a socket that did not authenticate (HTTP 401, in the 4000s)."""

TRY_AGAIN_LATER: Final = 1013
BAD_REQUEST: Final = 4400

AUTH_FORMAT: Final = 'first message must be {"type": "auth", "token": "<JWT>"}'


class NotebookSockets:
    """Serves ``/ws/notebooks/{notebook_id}`` sockets."""

    def __init__(
        self,
        authenticator: UserAuthenticator,
        downstreams: Downstreams,
        tokens: InternalTokens,
        settings: WebSocketSettings,
    ) -> None:
        self._authenticator = authenticator
        self._downstreams = downstreams
        self._tokens = tokens
        self._settings = settings

    async def serve(self, websocket: WebSocket) -> None:
        """The endpoint: accept, authenticate, pump."""
        with metrics.WEBSOCKETS_OPEN.track_inprogress():
            await self._serve(websocket)

    async def _serve(self, websocket: WebSocket) -> None:
        notebook_id = str(websocket.path_params["notebook_id"])
        await websocket.accept()
        if not ID.fullmatch(notebook_id):
            # Checked before anything else: it becomes a gRPC header, which
            # cannot hold a NUL or an "é".
            await close_socket(websocket, BAD_REQUEST, f"notebook_id {ID_RULE}")
            return
        user = await self._authenticate(websocket)
        metrics.WEBSOCKETS_ACCEPTED.labels("refused" if user is None else "ok").inc()
        if user is None:
            return
        logger.debug("socket on notebook %s opened for %s", notebook_id, user)
        calls = UserCalls(self._downstreams, self._tokens, user, notebook_id)
        bridge = NotebookBridge(websocket, calls, self._settings.queue_size)
        try:
            await bridge.run()
        except Exception:
            logger.exception("the socket on notebook %s failed", notebook_id)
            await close_socket(websocket, INTERNAL_ERROR, "internal error")

    async def _authenticate(self, websocket: WebSocket) -> str | None:
        """The user of the socket's auth message; None once it has been closed."""
        timeout_s = self._settings.auth_timeout_s
        try:
            message = await asyncio.wait_for(websocket.receive(), timeout_s)
        except TimeoutError:
            await close_socket(
                websocket, UNAUTHORIZED, f"no auth message within {timeout_s:g} s"
            )
            return None
        if message["type"] == "websocket.disconnect":
            return None
        token = auth_token(message.get("text"))
        if token is None:
            await close_socket(websocket, UNAUTHORIZED, AUTH_FORMAT)
            return None
        try:
            return await self._authenticator.authenticate(token)
        except Unauthenticated as error:
            reason = f"authentication failed: {error.message}"
            await close_socket(websocket, UNAUTHORIZED, reason)
        except Unavailable:
            reason = "cannot verify tokens now; try again later"
            await close_socket(websocket, TRY_AGAIN_LATER, reason)
        return None


def auth_token(text: str | None) -> str | None:
    """The token of an auth message, or None if ``text`` is not one."""
    if text is None:
        return None
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or message.get("type") != "auth":
        return None
    token = message.get("token")
    return token if isinstance(token, str) else None
