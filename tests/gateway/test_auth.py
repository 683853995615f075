"""User tokens from an external identity provider, verified through its JWKS URL.

The provider is a tiny Starlette app under uvicorn on loopback; the gateway is
configured from the environment as in production (GATEWAY_JWKS_URL,
GATEWAY_JWT_ISSUER, GATEWAY_JWT_AUDIENCE).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from google.rpc.error_details_pb2 import ErrorInfo
from grpc_status import rpc_status

from reflow.gateway.v1 import gateway_pb2
from services.gateway.auth import Identity, open_identity
from services.gateway.config import IdentitySettings
from tests.gateway.conftest import rpc_error, serving_http
from tests.gateway.fakes import IdentityProvider, sign

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.gateway.conftest import Gateway


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    provider = IdentityProvider()
    async with serving_http(provider.app()) as port:
        provider.url = f"http://127.0.0.1:{port}/jwks"
        yield provider


@pytest.fixture
async def identity(idp: IdentityProvider) -> AsyncIterator[Identity]:
    """Overrides the dev issuer: this module's gateway trusts ``idp``."""
    settings = IdentitySettings.from_env(
        {
            "GATEWAY_JWKS_URL": idp.url,
            "GATEWAY_JWT_ISSUER": idp.issuer,
            "GATEWAY_JWT_AUDIENCE": idp.audience,
        }
    )
    async with open_identity(settings) as opened:
        yield opened


async def current_user(
    gateway: Gateway, token: str
) -> gateway_pb2.GetCurrentUserResponse:
    return await gateway.gateway.GetCurrentUser(
        gateway_pb2.GetCurrentUserRequest(),
        metadata=(("authorization", f"Bearer {token}"),),
    )


async def refusal(gateway: Gateway, token: str) -> tuple[grpc.StatusCode, str, str]:
    """The code, message and ErrorInfo reason ``token`` is refused with."""
    error = await rpc_error(current_user(gateway, token))
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = ErrorInfo()
    assert any(detail.Unpack(info) for detail in status.details)
    return error.code(), error.details() or "", info.reason


async def test_provider_token_names_its_sub_as_the_user(
    gateway: Gateway, idp: IdentityProvider
) -> None:
    reply = await current_user(gateway, idp.token("alice"))

    assert (reply.user, reply.dev_mode) == ("alice", False)


async def test_wrong_audience_is_unauthenticated(
    gateway: Gateway, idp: IdentityProvider
) -> None:
    refused = await refusal(gateway, idp.token(aud="someone-else"))

    assert refused == (
        grpc.StatusCode.UNAUTHENTICATED,
        "token is invalid: wrong audience",
        "TOKEN_INVALID",
    )


async def test_wrong_issuer_is_unauthenticated(
    gateway: Gateway, idp: IdentityProvider
) -> None:
    refused = await refusal(gateway, idp.token(iss="https://evil.test"))

    assert refused[:2] == (
        grpc.StatusCode.UNAUTHENTICATED,
        "token is invalid: wrong issuer",
    )


async def test_expired_token_is_unauthenticated(
    gateway: Gateway, idp: IdentityProvider
) -> None:
    refused = await refusal(gateway, idp.token(exp=int(time.time()) - 60))

    assert refused == (
        grpc.StatusCode.UNAUTHENTICATED,
        "token has expired",
        "TOKEN_EXPIRED",
    )


async def test_token_expired_within_the_leeway_is_accepted(
    gateway: Gateway, idp: IdentityProvider
) -> None:
    reply = await current_user(gateway, idp.token(exp=int(time.time()) - 10))

    assert reply.user == "alice"


async def test_token_not_yet_valid_is_unauthenticated(
    gateway: Gateway, idp: IdentityProvider
) -> None:
    refused = await refusal(gateway, idp.token(nbf=int(time.time()) + 600))

    assert refused[1] == "token is invalid: not yet valid"


async def test_token_living_longer_than_a_day_is_unauthenticated(
    gateway: Gateway, idp: IdentityProvider
) -> None:
    refused = await refusal(gateway, idp.token(exp=253402300799))  # year 9999

    assert refused[0] == grpc.StatusCode.UNAUTHENTICATED
    assert refused[2] == "TOKEN_LIFETIME_TOO_LONG"


async def test_token_without_iat_is_unauthenticated(
    gateway: Gateway, idp: IdentityProvider
) -> None:
    refused = await refusal(gateway, idp.token(iat=None))

    assert refused[1] == "token is invalid: no 'iat' claim"


async def test_token_issued_in_the_future_is_unauthenticated(
    gateway: Gateway, idp: IdentityProvider
) -> None:
    now = int(time.time())
    refused = await refusal(gateway, idp.token(iat=now + 600, exp=now + 900))

    assert refused[1] == "token is invalid: not yet valid"


@pytest.mark.parametrize("user", ["al\x00ice", "al ice", "é", "a" * 256])
async def test_token_naming_an_unprintable_user_is_unauthenticated(
    gateway: Gateway, idp: IdentityProvider, user: str
) -> None:
    refused = await refusal(gateway, idp.token(user))

    assert refused[0] == grpc.StatusCode.UNAUTHENTICATED
    assert "('sub')" in refused[1]


async def test_token_without_exp_is_unauthenticated(
    gateway: Gateway, idp: IdentityProvider
) -> None:
    refused = await refusal(gateway, idp.token(exp=None))

    assert refused[1] == "token is invalid: no 'exp' claim"


async def test_token_signed_by_another_key_is_unauthenticated(
    gateway: Gateway, idp: IdentityProvider
) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = sign(stranger, idp.kid, "alice", iss=idp.issuer, aud=idp.audience)

    refused = await refusal(gateway, token)

    assert refused[1] == "token is invalid: bad signature"


async def test_token_with_an_unknown_key_id_is_unauthenticated(
    gateway: Gateway, idp: IdentityProvider
) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = sign(stranger, "nobody", "alice", iss=idp.issuer, aud=idp.audience)

    refused = await refusal(gateway, token)

    assert refused[1:] == ("token is signed with an unknown key", "SIGNING_KEY_UNKNOWN")


async def test_symmetric_token_is_unauthenticated(gateway: Gateway) -> None:
    token = jwt.encode({"sub": "alice"}, "x" * 32, algorithm="HS256")

    refused = await refusal(gateway, token)

    assert refused[1] == "token must be signed with RS256"


async def test_garbage_token_is_unauthenticated(gateway: Gateway) -> None:
    refused = await refusal(gateway, "not-a-jwt")

    assert refused[1] == "token is malformed"


async def test_rotated_key_is_accepted_without_restarting(
    gateway: Gateway, idp: IdentityProvider
) -> None:
    await current_user(gateway, idp.token("alice"))
    idp.rotate()

    reply = await current_user(gateway, idp.token("bob"))

    assert reply.user == "bob"
    assert idp.requests == 2
