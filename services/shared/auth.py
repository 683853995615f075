"""The internal token: who a request acts for, between Reflow's own services.

The gateway verifies a user's external JWT and then mints a short-lived
internal token (HS256, a secret every service shares, ``REFLOW_INTERNAL_SECRET``)
naming the user. Every internal service checks it on every RPC except health
and reflection with ``AuthInterceptor``; servicers read the caller with
``current_user()``, and a service calling another forwards the token it got
(``current_token()`` with ``grpc_client.bearer_metadata``).

Rejections are raised as ``Unauthenticated`` inside the RPC, so the
``ErrorInterceptor`` that ``create_server`` places outside this one turns them
into UNAUTHENTICATED with an ErrorInfo detail, like every other domain error.

Also a command for people calling a service directly::

    python -m services.shared.auth mint USER    # prints a token
"""

from __future__ import annotations

import argparse
import contextvars
import inspect
import logging
import os
import sys
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, Protocol

import grpc
import jwt

from services.shared.config import ConfigError, EnvReader
from services.shared.errors import Unauthenticated

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
    """The verified user of the current RPC and the token that proved it."""

    user: str
    token: str


_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("reflow_caller")


def current_user() -> str:
    """The user the current RPC acts for; Unauthenticated outside a verified RPC."""
    return _current_caller().user


def current_token() -> str:
    """The internal token of the current RPC, to forward to other services."""
    return _current_caller().token


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
    """Anything that turns a bearer token into a user name or raises Unauthenticated."""

    def verify(self, token: str) -> str: ...


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
        self._verified: dict[str, tuple[str, float]] = {}

    def token_for(self, user: str) -> str:
        """A token naming ``user`` with at least half its lifetime left.

        Reuses a recently minted one: services calling services on every
        request need not sign a new token each time.
        """
        now = time.time()
        cached = self._minted.get(user)
        if cached is not None and cached[1] - now > self._ttl_s / 2:
            return cached[0]
        token = self.mint(user)
        if len(self._minted) >= _CACHE_ENTRIES:
            self._minted.clear()
        self._minted[user] = (token, now + self._ttl_s)
        return token

    def mint(self, user: str) -> str:
        """A token naming ``user``, valid for ``ttl_s`` seconds from now."""
        if not user:
            raise ValueError("cannot mint a token for an empty user name")
        now = int(time.time())
        claims = {
            "sub": user,
            "iat": now,
            "exp": now + int(self._ttl_s),
            "iss": self._issuer,
            "aud": self._audience,
        }
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def verify(self, token: str) -> str:
        """The user ``token`` names; Unauthenticated if it does not verify."""
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
        if not isinstance(user, str) or not user:
            raise Unauthenticated(
                "internal token names no user", reason="TOKEN_INVALID"
            )
        if len(self._verified) >= _CACHE_ENTRIES:
            self._verified.clear()
        self._verified[token] = (user, float(claims["exp"]))
        return user


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
        text = value.decode() if isinstance(value, bytes) else value
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


Behavior = Callable[..., Any]


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Requires a verified internal token on every RPC but health and reflection.

    The token is checked when the RPC arrives; the verified caller is set in a
    ContextVar *inside* the wrapped handler, because grpc.aio may run the
    handler in another context than this interceptor.
    """

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails],
            Awaitable[grpc.RpcMethodHandler[Any, Any] | None],
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or is_public_method(handler_call_details.method):
            return handler
        try:
            token = bearer_token(handler_call_details.invocation_metadata)
            caller: Caller | Unauthenticated = Caller(
                self._verifier.verify(token), token
            )
        except Unauthenticated as error:
            logger.debug("rejected %s: %s", handler_call_details.method, error.message)
            caller = error
        return replace_behavior(handler, lambda behavior: _as_caller(behavior, caller))


def _as_caller(behavior: Behavior, caller: Caller | Unauthenticated) -> Behavior:
    """``behavior`` run with ``caller`` set, or raising the rejection instead.

    The wrapper has the same kind as ``behavior`` (grpc.aio calls handlers
    according to their kind); see ``grpc_server._mapped``.
    """
    if inspect.isasyncgenfunction(behavior):

        async def async_stream(request: Any, context: Any) -> AsyncIterator[Any]:
            # No reset: grpc.aio runs each RPC in a task of its own, whose
            # context ends with it, and an async generator may be finalised
            # from another context, where reset() would fail.
            _caller.set(_checked(caller))
            async for response in behavior(request, context):
                yield response

        return async_stream
    if inspect.iscoroutinefunction(behavior):

        async def async_unary(request: Any, context: Any) -> Any:
            reset = _caller.set(_checked(caller))
            try:
                return await behavior(request, context)
            finally:
                _caller.reset(reset)

        return async_unary
    if inspect.isgeneratorfunction(behavior):

        def sync_stream(request: Any, context: Any) -> Iterator[Any]:
            # grpc.aio advances a sync generator with one pool job per item,
            # each on whichever thread is free: set the caller around every step.
            responses = behavior(request, context)
            while True:
                reset = _caller.set(_checked(caller))
                try:
                    response = next(responses)
                except StopIteration:
                    return
                finally:
                    _caller.reset(reset)
                yield response

        return sync_stream

    def sync_unary(request: Any, context: Any) -> Any:
        # Pool threads are reused across RPCs: always reset.
        reset = _caller.set(_checked(caller))
        try:
            return behavior(request, context)
        finally:
            _caller.reset(reset)

    return sync_unary


def _checked(caller: Caller | Unauthenticated) -> Caller:
    if isinstance(caller, Unauthenticated):
        raise caller
    return caller


def replace_behavior(
    handler: grpc.RpcMethodHandler[Any, Any], wrap: Callable[[Behavior], Behavior]
) -> grpc.RpcMethodHandler[Any, Any]:
    """A copy of ``handler`` whose behaviour, whatever its shape, is wrapped."""
    kinds: tuple[tuple[Behavior | None, Callable[..., Any]], ...] = (
        (handler.unary_unary, grpc.unary_unary_rpc_method_handler),
        (handler.unary_stream, grpc.unary_stream_rpc_method_handler),
        (handler.stream_unary, grpc.stream_unary_rpc_method_handler),
        (handler.stream_stream, grpc.stream_stream_rpc_method_handler),
    )
    for behavior, make in kinds:
        if behavior is not None:
            new_handler: grpc.RpcMethodHandler[Any, Any] = make(
                wrap(behavior),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
            return new_handler
    return handler


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
