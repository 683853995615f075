"""The internal token: who a request acts for, between Reflow's own services.

The gateway verifies a user's external JWT and then mints a short-lived
internal token (HS256, a secret every service shares, ``REFLOW_INTERNAL_SECRET``)
naming the user. Every internal service checks it on every RPC except health
and reflection (``services.shared.interceptor.RpcGuard``); servicers read the
caller with ``current_user()``, and a service calling another forwards the
token it got (``current_token()`` with ``grpc_client.bearer_metadata``).
A token also carries the id of the request that caused it (claim ``rid``),
so every service's log lines and errors for one user action share one id.

A user name (``sub``) is a printable identifier of bounded length
(``patterns.USER``); tokens naming anything else are refused. Rejections
are ``Unauthenticated``, which the guard answers as UNAUTHENTICATED with an
ErrorInfo detail, like every other domain error.

Also a command for people calling a service directly::

    python -m services.shared.auth mint USER    # prints a token
"""

from __future__ import annotations

import argparse
import contextvars
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NamedTuple, Protocol

import jwt

from services.shared.config import ConfigError, EnvReader
from services.shared.errors import Unauthenticated
from services.shared.patterns import USER

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

logger = logging.getLogger(__name__)

MIN_SECRET_BYTES: Final = 32
"""HS256 wants a key at least as long as its hash (RFC 7518 §3.2)."""

PUBLIC_METHOD_PREFIXES: Final = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
"""RPCs anyone may call: orchestrators and grpcurl have no token."""

_ALGORITHM: Final = "HS256"
_REQUIRED_CLAIMS: Final = ["sub", "iat", "exp", "iss", "aud"]
_CACHE_ENTRIES: Final = 4096


class Caller(NamedTuple):
    """The verified user of the current RPC, the token that proved it, its request."""

    user: str
    token: str
    request_id: str = ""


_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("reflow_caller")


def current_user() -> str:
    """The user the current RPC acts for; Unauthenticated outside a verified RPC."""
    return _current_caller().user


def current_token() -> str:
    """The internal token of the current RPC, to forward to other services."""
    return _current_caller().token


def enter_caller(caller: Caller) -> None:
    """Make ``caller`` the current RPC's caller (the server guard does this)."""
    _caller.set(caller)


def is_user_name(user: object) -> bool:
    """Whether ``user`` is acceptable as a ``sub``: printable, bounded, no spaces."""
    return isinstance(user, str) and USER.fullmatch(user) is not None


def _current_caller() -> Caller:
    caller = _caller.get(None)
    if caller is None:
        raise Unauthenticated("no authenticated caller", reason="NO_CALLER")
    return caller


@dataclass(frozen=True)
class InternalAuthSettings:
    """How internal tokens are signed: the shared secret and their lifetime."""

    secret: str
    ttl_s: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> InternalAuthSettings:
        """Read ``REFLOW_INTERNAL_SECRET`` and ``REFLOW_INTERNAL_TOKEN_TTL_S``.

        There is no built-in secret: a known one would let anyone (a notebook
        cell included) call every service as any user.
        """
        read = EnvReader(env, prefix="REFLOW_")
        secret = read.optional_text("INTERNAL_SECRET")
        ttl_s = read.number("INTERNAL_TOKEN_TTL_S", 300.0)
        if secret is None:
            raise ConfigError(
                "REFLOW_INTERNAL_SECRET is not set: every service needs the same "
                f"random secret of {MIN_SECRET_BYTES}+ bytes (`make run` creates "
                'one in its data directory; or: python3 -c "import secrets; '
                'print(secrets.token_urlsafe(48))")'
            )
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"REFLOW_INTERNAL_SECRET is too short: it must be at least "
                f"{MIN_SECRET_BYTES} bytes"
            )
        return cls(secret=secret, ttl_s=ttl_s)


class TokenVerifier(Protocol):
    """Anything that turns a bearer token into its caller or raises Unauthenticated."""

    def caller(self, token: str) -> Caller: ...


class InternalTokens:
    """Mints and verifies internal tokens (HS256 JWTs with sub/iat/exp/iss/aud)."""

    def __init__(
        self,
        secret: str,
        ttl_s: float = 300.0,
        issuer: str = "reflow-gateway",
        audience: str = "reflow-internal",
        leeway_s: float = 5.0,
    ) -> None:
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"the internal secret must be at least {MIN_SECRET_BYTES} bytes"
            )
        self._secret = secret
        self._ttl_s = ttl_s
        self._issuer = issuer
        self._audience = audience
        self._leeway_s = leeway_s
        # Signing and checking an HMAC JWT costs tens of microseconds, paid on
        # every hop of every call; both caches keep a token only while it is
        # valid, so they change no outcome, only the cost.
        self._minted: dict[str, tuple[str, float]] = {}
        self._verified: dict[str, tuple[Caller, float]] = {}

    def token_for(self, user: str, request_id: str = "") -> str:
        """A token naming ``user`` (and ``request_id``, when given).

        Without a request id, reuses a recently minted token with at least
        half its lifetime left: work a service starts on its own (recording
        results) need not sign a new token each time.
        """
        if request_id:
            return self.mint(user, request_id)
        now = time.time()
        cached = self._minted.get(user)
        if cached is not None and cached[1] - now > self._ttl_s / 2:
            return cached[0]
        token = self.mint(user)
        if len(self._minted) >= _CACHE_ENTRIES:
            self._minted.clear()
        self._minted[user] = (token, now + self._ttl_s)
        return token

    def mint(self, user: str, request_id: str = "") -> str:
        """A token naming ``user``, valid for ``ttl_s`` seconds from now."""
        if not is_user_name(user):
            raise ValueError(f"cannot mint a token for the user name {user!r}")
        now = int(time.time())
        claims: dict[str, str | int] = {
            "sub": user,
            "iat": now,
            "exp": now + int(self._ttl_s),
            "iss": self._issuer,
            "aud": self._audience,
        }
        if request_id:
            claims["rid"] = request_id
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def verify(self, token: str) -> str:
        """The user ``token`` names; Unauthenticated if it does not verify."""
        return self.caller(token).user

    def caller(self, token: str) -> Caller:
        """The caller ``token`` proves; Unauthenticated if it does not verify."""
        if not token:
            raise Unauthenticated("missing internal token", reason="TOKEN_MISSING")
        cached = self._verified.get(token)
        if cached is not None and time.time() < cached[1]:
            return cached[0]
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated(
                "internal token has expired", reason="TOKEN_EXPIRED"
            ) from None
        except jwt.InvalidTokenError as error:
            raise Unauthenticated(
                f"internal token is invalid: {_describe(error)}", reason="TOKEN_INVALID"
            ) from None
        user = claims["sub"]
        if not is_user_name(user):
            raise Unauthenticated(
                "internal token names no valid user", reason="TOKEN_INVALID"
            )
        request_id = claims.get("rid")
        caller = Caller(user, token, request_id if isinstance(request_id, str) else "")
        if len(self._verified) >= _CACHE_ENTRIES:
            self._verified.clear()
        self._verified[token] = (caller, float(claims["exp"]))
        return caller


def _describe(error: jwt.InvalidTokenError) -> str:
    """A short reason that reveals nothing about the secret or the token."""
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


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    """The token of the ``authorization: Bearer <token>`` entry, or Unauthenticated."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        raise Unauthenticated(
            "authorization metadata must be 'Bearer <token>'", reason="TOKEN_MISSING"
        )
    raise Unauthenticated(
        "missing 'authorization: Bearer <token>' metadata", reason="TOKEN_MISSING"
    )


def is_public_method(method: str) -> bool:
    """Whether ``method`` (``/package.Service/Method``) needs no token."""
    return method.startswith(PUBLIC_METHOD_PREFIXES)


def main(argv: Sequence[str] | None = None) -> int:
    """``mint USER``: print an internal token for USER (secret from the environment)."""
    parser = argparse.ArgumentParser(
        prog="python -m services.shared.auth",
        description="Print an internal token, to call a service directly.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    mint = commands.add_parser("mint", help="print a token naming USER")
    mint.add_argument("user")
    mint.add_argument("--ttl-s", type=float, help="lifetime (default: settings)")
    args = parser.parse_args(argv)
    try:
        settings = InternalAuthSettings.from_env()
    except ConfigError as error:
        parser.exit(2, f"{error}\n")
    ttl_s = settings.ttl_s if args.ttl_s is None else args.ttl_s
    print(InternalTokens(settings.secret, ttl_s=ttl_s).mint(args.user))
    return 0


if __name__ == "__main__":
    # Warnings go to stderr: stdout carries only the token,
    # so `$(python -m services.shared.auth mint ada)` works.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sys.exit(main())
