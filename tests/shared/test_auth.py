"""Tests for services.shared.auth: internal tokens, their check per RPC, the CLI."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING, Any

import grpc
import jwt
import pytest
from google.rpc.error_details_pb2 import ErrorInfo
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from services.shared.auth import (
    InternalAuthSettings,
    InternalTokens,
    bearer_token,
    current_user,
    main,
)
from services.shared.config import ConfigError
from services.shared.errors import Unauthenticated
from services.shared.grpc_client import bearer_metadata
from services.shared.healthcheck import CHECK_METHOD
from tests.shared.conftest import TEST_SECRET
from tests.shared.echo import (
    SERVICE,
    Context,
    Echo,
    echo_stub,
    rich_status,
    running_server,
    text,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

OTHER_SECRET = "another-secret-that-is-also-32-bytes-or-more"


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid internal-token claims for "ada", with ``overrides`` applied."""
    now = int(time.time())
    return {
        "sub": "ada",
        "iat": now,
        "exp": now + 60,
        "iss": "reflow-gateway",
        "aud": "reflow-internal",
        **overrides,
    }


def signed(token_claims: dict[str, Any], secret: str = TEST_SECRET) -> str:
    return jwt.encode(token_claims, secret, algorithm="HS256")


async def whoami(request: Any, context: Context) -> Any:
    return text(current_user())


async def whoami_streamed(request: Any, context: Context) -> AsyncIterator[Any]:
    yield text(current_user())


# -- InternalTokens ------------------------------------------------------------


def test_minted_token_verifies_as_its_user(tokens: InternalTokens) -> None:
    token = tokens.mint("ada")

    assert tokens.verify(token) == "ada"


def test_minted_token_carries_the_standard_claims(tokens: InternalTokens) -> None:
    token = tokens.mint("ada")

    decoded = jwt.decode(token, options={"verify_signature": False})
    assert set(decoded) == {"sub", "iat", "exp", "iss", "aud"}


def test_expired_token_is_rejected(tokens: InternalTokens) -> None:
    token = signed(claims(exp=int(time.time()) - 60))

    with pytest.raises(Unauthenticated, match="expired"):
        tokens.verify(token)


def test_token_expired_within_leeway_is_accepted(tokens: InternalTokens) -> None:
    token = signed(claims(exp=int(time.time()) - 1))

    assert tokens.verify(token) == "ada"


def test_token_signed_with_another_secret_is_rejected(tokens: InternalTokens) -> None:
    token = InternalTokens(OTHER_SECRET).mint("ada")

    with pytest.raises(Unauthenticated, match="bad signature"):
        tokens.verify(token)


def test_token_for_another_audience_is_rejected(tokens: InternalTokens) -> None:
    token = signed(claims(aud="someone-else"))

    with pytest.raises(Unauthenticated, match="wrong audience"):
        tokens.verify(token)


def test_token_from_another_issuer_is_rejected(tokens: InternalTokens) -> None:
    token = signed(claims(iss="someone-else"))

    with pytest.raises(Unauthenticated, match="wrong issuer"):
        tokens.verify(token)


def test_token_without_expiry_is_rejected(tokens: InternalTokens) -> None:
    token_claims = claims()
    del token_claims["exp"]

    with pytest.raises(Unauthenticated, match="'exp'"):
        tokens.verify(signed(token_claims))


def test_unsigned_token_is_rejected(tokens: InternalTokens) -> None:
    token = jwt.encode(claims(), key="", algorithm="none")

    with pytest.raises(Unauthenticated):
        tokens.verify(token)


def test_garbage_token_is_malformed(tokens: InternalTokens) -> None:
    with pytest.raises(Unauthenticated, match="malformed"):
        tokens.verify("not-a-jwt")


def test_empty_token_is_missing(tokens: InternalTokens) -> None:
    with pytest.raises(Unauthenticated) as error:
        tokens.verify("")

    assert error.value.reason == "TOKEN_MISSING"


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        InternalTokens("short")


# -- bearer_token / current_user ------------------------------------------------


def test_bearer_token_is_read_from_authorization_metadata() -> None:
    metadata = (("user-agent", "x"), ("authorization", "Bearer abc.def"))

    assert bearer_token(metadata) == "abc.def"


def test_bearer_scheme_is_case_insensitive() -> None:
    assert bearer_token((("authorization", "bearer abc"),)) == "abc"


def test_missing_authorization_is_unauthenticated() -> None:
    with pytest.raises(Unauthenticated, match="missing 'authorization"):
        bearer_token((("user-agent", "x"),))


def test_other_authorization_scheme_is_unauthenticated() -> None:
    with pytest.raises(Unauthenticated, match="'Bearer <token>'"):
        bearer_token((("authorization", "Basic YWRhOnB3"),))


def test_current_user_outside_an_rpc_is_unauthenticated() -> None:
    with pytest.raises(Unauthenticated):
        current_user()


# -- InternalAuthSettings -------------------------------------------------------


def test_settings_read_the_shared_secret() -> None:
    settings = InternalAuthSettings.from_env({"REFLOW_INTERNAL_SECRET": TEST_SECRET})

    assert settings.secret == TEST_SECRET


def test_settings_without_a_secret_are_refused_naming_the_variable() -> None:
    # There is no built-in secret to fall back to: one in the public source
    # would let anyone, a notebook cell included, act as any user.
    with pytest.raises(ConfigError, match="REFLOW_INTERNAL_SECRET is not set"):
        InternalAuthSettings.from_env({})


def test_short_secret_setting_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match="REFLOW_INTERNAL_SECRET") as error:
        InternalAuthSettings.from_env({"REFLOW_INTERNAL_SECRET": "hunter2"})

    assert "hunter2" not in str(error.value)


# -- the internal token, checked by the server guard (create_server) ----------


async def test_call_without_token_is_unauthenticated(tokens: InternalTokens) -> None:
    async with echo_stub(token_verifier=tokens) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.unary_unary(text("x"))

    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_rejection_carries_error_info(tokens: InternalTokens) -> None:
    async with echo_stub(token_verifier=tokens) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.unary_unary(text("x"))

    detail = rich_status(error.value).details[0]
    info = ErrorInfo()
    detail.Unpack(info)
    assert (info.reason, info.domain) == ("TOKEN_MISSING", "reflow")


async def test_call_with_expired_token_is_unauthenticated(
    tokens: InternalTokens,
) -> None:
    token = signed(claims(exp=int(time.time()) - 60))
    async with echo_stub(token_verifier=tokens) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.unary_unary(text("x"), metadata=bearer_metadata(token))

    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.value.details() == "internal token has expired"


async def test_call_with_forged_token_is_unauthenticated(
    tokens: InternalTokens,
) -> None:
    token = InternalTokens(OTHER_SECRET).mint("ada")
    async with echo_stub(token_verifier=tokens) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.unary_unary(text("x"), metadata=bearer_metadata(token))

    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_call_with_wrong_audience_token_is_unauthenticated(
    tokens: InternalTokens,
) -> None:
    token = signed(claims(aud="reflow-public"))
    async with echo_stub(token_verifier=tokens) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.unary_unary(text("x"), metadata=bearer_metadata(token))

    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_rejected_call_never_reaches_the_handler(tokens: InternalTokens) -> None:
    calls: list[str] = []

    async def record(request: Any, context: Context) -> Any:
        calls.append(request.value)
        return request

    async with echo_stub(Echo(unary_unary=record), token_verifier=tokens) as stub:
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.unary_unary(text("x"))

    assert calls == []


async def test_rejected_stream_sends_no_messages(tokens: InternalTokens) -> None:
    async with echo_stub(token_verifier=tokens) as stub:
        call = stub.unary_stream(text("a b c"))
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call.read()

    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_unary_handler_sees_the_verified_user(tokens: InternalTokens) -> None:
    async with echo_stub(Echo(unary_unary=whoami), token_verifier=tokens) as stub:
        reply = await stub.unary_unary(
            text("x"), metadata=bearer_metadata(tokens.mint("ada"))
        )

    assert reply.value == "ada"


async def test_stream_handler_sees_the_verified_user(tokens: InternalTokens) -> None:
    echo = Echo(unary_stream=whoami_streamed)
    async with echo_stub(echo, token_verifier=tokens) as stub:
        replies = [
            reply.value
            async for reply in stub.unary_stream(
                text("x"), metadata=bearer_metadata(tokens.mint("ada"))
            )
        ]

    assert replies == ["ada"]


async def test_concurrent_calls_each_see_their_own_user(tokens: InternalTokens) -> None:
    async with echo_stub(Echo(unary_unary=whoami), token_verifier=tokens) as stub:
        replies = await asyncio.gather(
            *(
                stub.unary_unary(text("x"), metadata=bearer_metadata(tokens.mint(u)))
                for u in ("ada", "bob", "cy")
            )
        )

    assert [reply.value for reply in replies] == ["ada", "bob", "cy"]


async def test_health_check_needs_no_token(tokens: InternalTokens) -> None:
    async with (
        running_server([Echo().add_to], token_verifier=tokens) as (_, port),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        check = channel.unary_unary(
            CHECK_METHOD,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        response = await check(health_pb2.HealthCheckRequest())

    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_needs_no_token(tokens: InternalTokens) -> None:
    async with (
        running_server([Echo().add_to], token_verifier=tokens) as (_, port),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        reflect = channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        call = reflect(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        response = await anext(aiter(call))

    assert SERVICE in [s.name for s in response.list_services_response.service]


# -- the CLI ------------------------------------------------------------------


def test_mint_command_prints_a_token_for_the_user(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REFLOW_INTERNAL_SECRET", TEST_SECRET)

    main(["mint", "ada"])

    assert InternalTokens(TEST_SECRET).verify(capsys.readouterr().out.strip()) == "ada"


async def test_module_runs_as_a_command() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.shared.auth",
        "mint",
        "ada",
        env={"REFLOW_INTERNAL_SECRET": TEST_SECRET},
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=30)

    assert InternalTokens(TEST_SECRET).verify(stdout.decode().strip()) == "ada"


def test_token_for_reuses_a_fresh_token_for_the_same_user() -> None:
    tokens = InternalTokens("a-test-secret-that-is-long-enough-0123456789")

    first = tokens.token_for("alice")

    assert tokens.token_for("alice") == first
    assert tokens.token_for("bob") != first
    assert tokens.verify(first) == "alice"
    assert tokens.verify(first) == "alice"  # the second time from the cache
