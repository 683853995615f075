"""Verifying users' tokens: RS256 JWTs checked against the issuer's signing keys.

A user token is accepted when its header names RS256 and a key the issuer
publishes (``SigningKeys``), its signature verifies, it was issued in the
past (``iat`` is required), has not expired (``exp`` is required; ``nbf`` is
honoured), lives no longer than ``max_lifetime_s`` (24 h by default: a token
valid until 9999 is a stolen-forever credential), and, when configured, its
``iss`` and ``aud`` match. Clock skew of ``leeway_s`` (30 s by default) is
allowed on the time claims. The user is the ``sub`` claim, which must be
printable ASCII without spaces, at most 255 characters (``patterns.USER``).

``open_identity`` wires the mode chosen in ``IdentitySettings``: an external
issuer's JWKS over HTTP, or the development issuer's key set handed over
directly. In both cases tokens go through the same ``UserAuthenticator``.

Refusals are ``TokenRejected`` (UNAUTHENTICATED with an ErrorInfo reason);
their messages say what is wrong, never what the token was.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import httpx
import jwt

from services.gateway.devissuer import DevIssuer
from services.gateway.errors import TokenRejected
from services.gateway.jwks import (
    ALGORITHM,
    HttpKeySource,
    KeySource,
    SigningKeys,
    StaticKeySource,
)
from services.shared.auth import bearer_token, is_user_name
from services.shared.errors import Unauthenticated
from services.shared.patterns import USER_MAX_CHARS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable

    from services.gateway.config import IdentitySettings

logger = logging.getLogger(__name__)

_CACHE_ENTRIES: Final = 4096
_CACHE_TTL_S: Final = 60.0

DEFAULT_MAX_LIFETIME_S: Final = 24 * 3600.0
"""The longest a user token may live ('exp' - 'iat'), unless configured."""

DEV_JWKS_PATH: Final = "/.well-known/jwks.json"
"""Where the gateway's HTTP server publishes the development issuer's keys."""


class UserAuthenticator:
    """Turns a user token into the user it names, or raises ``TokenRejected``."""

    def __init__(
        self,
        keys: SigningKeys,
        issuer: str | None = None,
        audience: str | None = None,
        leeway_s: float = 30.0,
        max_lifetime_s: float = DEFAULT_MAX_LIFETIME_S,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway_s = leeway_s
        self._max_lifetime_s = max_lifetime_s
        # A browser sends the same token with every call; an RSA signature
        # check per call would be most of the gateway's own work. A verified
        # token is trusted again until it expires, or for a minute at most
        # so that a signing key withdrawn by the provider stops working soon.
        self._verified: dict[str, tuple[str, float]] = {}

    async def authenticate(self, token: str) -> str:
        """The ``sub`` of a valid ``token``."""
        if not token:
            raise TokenRejected("no token was sent", reason="TOKEN_MISSING")
        cached = self._verified.get(token)
        now = time.time()
        if cached is not None and now < cached[1]:
            return cached[0]
        user, expires = await self._verify(token)
        if len(self._verified) >= _CACHE_ENTRIES:
            self._verified.clear()
        self._verified[token] = (user, min(expires, now + _CACHE_TTL_S))
        return user

    async def _verify(self, token: str) -> tuple[str, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejected("token is malformed") from None
        if header.get("alg") != ALGORITHM:
            raise TokenRejected(f"token must be signed with {ALGORITHM}")
        kid = header.get("kid")
        key = await self._keys.key_for(kid if isinstance(kid, str) else None)
        claims = self._decode(token, key)
        user = claims.get("sub")
        if not isinstance(user, str) or not user:
            raise TokenRejected("token names no user ('sub')")
        if not is_user_name(user):
            raise TokenRejected(
                "token's user ('sub') must be printable ASCII without spaces, "
                f"at most {USER_MAX_CHARS} characters"
            )
        expires = _number(claims.get("exp"))
        issued = _number(claims.get("iat"))
        if expires - issued > self._max_lifetime_s:
            raise TokenRejected(
                f"token lives longer than the {self._max_lifetime_s:g} s allowed "
                "('exp' - 'iat')",
                reason="TOKEN_LIFETIME_TOO_LONG",
            )
        return user, expires

    async def authenticate_metadata(
        self, metadata: Iterable[tuple[str, str | bytes]] | None
    ) -> str:
        """The user of the ``authorization: Bearer <token>`` entry of gRPC metadata."""
        try:
            token = bearer_token(tuple(metadata or ()))
        except Unauthenticated as error:
            raise TokenRejected(error.message, reason="TOKEN_MISSING") from None
        return await self.authenticate(token)

    def _decode(self, token: str, key: object) -> dict[str, object]:
        try:
            claims: dict[str, object] = jwt.decode(
                token,
                key,  # type: ignore[arg-type]
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway_s,
                options={
                    # pyjwt refuses an `iat` in the future (beyond the leeway)
                    # and a `nbf` not reached yet.
                    "require": ["exp", "iat", "sub"],
                    # Without a configured audience, a token's own `aud` is
                    # not ours to judge (PyJWT would reject any).
                    "verify_aud": self._audience is not None,
                },
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("token has expired", reason="TOKEN_EXPIRED") from None
        except jwt.InvalidTokenError as error:
            raise TokenRejected(f"token is invalid: {_describe(error)}") from None
        return claims


def _number(value: object) -> float:
    """A numeric claim pyjwt has checked is there (0 if it is not a number)."""
    return float(value) if isinstance(value, int | float) else 0.0


def _describe(error: jwt.InvalidTokenError) -> str:
    """What is wrong, in words that reveal nothing about the token."""
    if isinstance(error, jwt.InvalidSignatureError):
        return "bad signature"
    if isinstance(error, jwt.InvalidAudienceError):
        return "wrong audience"
    if isinstance(error, jwt.InvalidIssuerError):
        return "wrong issuer"
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"no {error.claim!r} claim"
    if isinstance(error, jwt.ImmatureSignatureError):
        return "not yet valid"
    if isinstance(error, jwt.DecodeError):
        return "malformed"
    return type(error).__name__


@dataclass(frozen=True)
class Identity:
    """How this gateway authenticates users, and its dev issuer if it is one."""

    authenticator: UserAuthenticator
    dev_issuer: DevIssuer | None

    @property
    def dev_mode(self) -> bool:
        return self.dev_issuer is not None


@asynccontextmanager
async def open_identity(settings: IdentitySettings) -> AsyncIterator[Identity]:
    """The authenticator ``settings`` call for (and the HTTP client it uses)."""
    if settings.jwks_url is None:
        issuer = DevIssuer.load_or_create(
            settings.data_dir,
            settings.issuer or "",
            settings.audience or "",
        )
        logger.warning(
            "DEV MODE: no identity provider is configured (GATEWAY_JWKS_URL or "
            "CLERK_FRONTEND_API), so the gateway issues its own tokens with the key "
            "in %s; anyone who can read that file can sign in as anyone. "
            "Get a token with `python -m services.gateway.devtoken USER`.",
            settings.data_dir,
        )
        source: KeySource = StaticKeySource(issuer.jwks(), DEV_JWKS_PATH)
        yield Identity(_authenticator(source, settings), issuer)
        return
    async with httpx.AsyncClient(follow_redirects=True) as client:
        logger.info("verifying user tokens with the keys at %s", settings.jwks_url)
        source = HttpKeySource(settings.jwks_url, client, settings.jwks_timeout_s)
        yield Identity(_authenticator(source, settings), None)


def _authenticator(source: KeySource, settings: IdentitySettings) -> UserAuthenticator:
    keys = SigningKeys(
        source,
        max_age_s=settings.jwks_max_age_s,
        min_refresh_s=settings.jwks_min_refresh_s,
    )
    return UserAuthenticator(
        keys,
        issuer=settings.issuer,
        audience=settings.audience,
        leeway_s=settings.leeway_s,
        max_lifetime_s=settings.max_lifetime_s,
    )
