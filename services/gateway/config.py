"""The gateway's settings, read once from GATEWAY_* and *_SERVICE_ADDR variables.

Who issues user tokens decides the gateway's mode. ``GATEWAY_JWKS_URL`` (any
OIDC provider) or ``CLERK_FRONTEND_API`` (which stands for
``https://<value>/.well-known/jwks.json``) names an external issuer. With
neither, the gateway is its own development issuer: its RSA key lives in
``GATEWAY_DATA_DIR`` and ``python -m services.gateway.devtoken USER`` prints
tokens it accepts. Either way the same verification code runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from services.shared.auth import InternalAuthSettings
from services.shared.config import EnvReader, listen_host
from services.shared.metrics import metrics_port

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

DEV_ISSUER: Final = "reflow-dev-issuer"
"""The ``iss`` of development tokens (unless GATEWAY_JWT_ISSUER says otherwise)."""

DEV_AUDIENCE: Final = "reflow"
"""The ``aud`` of development tokens (unless GATEWAY_JWT_AUDIENCE says otherwise)."""


@dataclass(frozen=True)
class IdentitySettings:
    """Who issues the user tokens the gateway accepts, and how they are checked."""

    jwks_url: str | None
    issuer: str | None
    audience: str | None
    data_dir: Path
    leeway_s: float
    # GATEWAY_JWT_MAX_LIFETIME_S: the longest a token may live ('exp' - 'iat').
    max_lifetime_s: float
    jwks_max_age_s: float
    jwks_min_refresh_s: float
    jwks_timeout_s: float

    @property
    def dev_mode(self) -> bool:
        """True when the gateway issues (and accepts only) its own dev tokens."""
        return self.jwks_url is None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> IdentitySettings:
        read = EnvReader(env, prefix="GATEWAY_")
        jwks_url = read.optional_text("JWKS_URL")
        issuer = read.optional_text("JWT_ISSUER")
        clerk = EnvReader(env, prefix="").optional_text("CLERK_FRONTEND_API")
        if jwks_url is None and clerk is not None:
            host = clerk.strip().removeprefix("https://").rstrip("/")
            jwks_url = f"https://{host}/.well-known/jwks.json"
            # Clerk's session tokens name their frontend API URL as `iss`.
            issuer = issuer or f"https://{host}"
        audience = read.optional_text("JWT_AUDIENCE")
        if jwks_url is None:
            issuer = issuer or DEV_ISSUER
            audience = audience or DEV_AUDIENCE
        return cls(
            jwks_url=jwks_url,
            issuer=issuer,
            audience=audience,
            data_dir=read.path("DATA_DIR", "data/gateway"),
            leeway_s=read.number("JWT_LEEWAY_S", 30.0),
            max_lifetime_s=read.number("JWT_MAX_LIFETIME_S", 24 * 3600.0),
            jwks_max_age_s=read.number("JWKS_MAX_AGE_S", 3600.0),
            jwks_min_refresh_s=read.number("JWKS_MIN_REFRESH_S", 10.0),
            jwks_timeout_s=read.number("JWKS_TIMEOUT_S", 5.0),
        )


@dataclass(frozen=True)
class WebSocketSettings:
    """Limits of the WebSocket bridge."""

    queue_size: int = 1024
    auth_timeout_s: float = 10.0


@dataclass(frozen=True)
class Settings:
    """Everything the gateway is configured by."""

    grpc_port: int
    http_port: int
    notebook_service_addr: str
    execution_service_addr: str
    assistant_service_addr: str | None
    unary_timeout_s: float
    health_timeout_s: float
    identity: IdentitySettings
    websocket: WebSocketSettings
    log_level: str
    log_format: str
    auth: InternalAuthSettings
    # REFLOW_LISTEN_HOST: the address its servers listen on.
    listen_host: str = "127.0.0.1"
    # <SERVICE>_METRICS_PORT: where /metrics is served; None: not served.
    metrics_port: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        read = EnvReader(env, prefix="GATEWAY_")
        shared = EnvReader(env, prefix="")
        websocket = WebSocketSettings(
            queue_size=read.integer("WS_QUEUE_SIZE", 1024, minimum=1),
            auth_timeout_s=read.number("WS_AUTH_TIMEOUT_S", 10.0),
        )
        return cls(
            grpc_port=read.integer("GRPC_PORT", 50050, minimum=0),
            http_port=read.integer("HTTP_PORT", 8000, minimum=0),
            notebook_service_addr=shared.text(
                "NOTEBOOK_SERVICE_ADDR", "localhost:50051"
            ),
            execution_service_addr=shared.text(
                "EXECUTION_SERVICE_ADDR", "localhost:50052"
            ),
            assistant_service_addr=shared.optional_text("ASSISTANT_SERVICE_ADDR"),
            unary_timeout_s=read.number("UNARY_TIMEOUT_S", 60.0),
            health_timeout_s=read.number("HEALTH_TIMEOUT_S", 1.0),
            identity=IdentitySettings.from_env(env),
            websocket=websocket,
            log_level=read.text("LOG_LEVEL", "INFO"),
            log_format=shared.choice("LOG_FORMAT", ("text", "json"), "text"),
            auth=InternalAuthSettings.from_env(env),
            listen_host=listen_host(env),
            metrics_port=metrics_port(read),
        )
