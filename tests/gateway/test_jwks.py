"""The signing key cache: refresh on unknown kid (rate-limited), on age, on failure."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from services.gateway.errors import SigningKeysUnavailable, TokenRejected
from services.gateway.jwks import HttpKeySource, SigningKeys, parse_key_set
from tests.gateway.fakes import IdentityProvider

if TYPE_CHECKING:
    from collections.abc import Mapping


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ProviderSource:
    """The provider's current key set, or an outage."""

    location = "test://jwks"

    def __init__(self, provider: IdentityProvider) -> None:
        self.provider = provider
        self.down = False

    async def fetch(self) -> Mapping[str, Any]:
        if self.down:
            raise httpx.ConnectError("provider is down")
        return self.provider.jwks()


@pytest.fixture(scope="module")
def provider() -> IdentityProvider:
    return IdentityProvider()


@pytest.fixture
def source(provider: IdentityProvider) -> ProviderSource:
    return ProviderSource(provider)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(source: ProviderSource, clock: Clock) -> SigningKeys:
    return SigningKeys(source, max_age_s=3600, min_refresh_s=10, clock=clock)


async def test_known_key_is_served_from_the_cache(
    keys: SigningKeys, provider: IdentityProvider
) -> None:
    await keys.key_for(provider.kid)

    await keys.key_for(provider.kid)

    assert keys.fetches == 1


async def test_unknown_key_ids_refresh_at_most_once_per_interval(
    keys: SigningKeys, provider: IdentityProvider
) -> None:
    await keys.key_for(provider.kid)

    for kid in ("forged-1", "forged-2", "forged-3"):
        with pytest.raises(TokenRejected):
            await keys.key_for(kid)

    assert keys.fetches == 2


async def test_unknown_key_id_refreshes_again_after_the_interval(
    keys: SigningKeys, provider: IdentityProvider, clock: Clock
) -> None:
    with pytest.raises(TokenRejected):
        await keys.key_for("forged")
    with pytest.raises(TokenRejected):
        await keys.key_for("forged")
    clock.now += 10

    with pytest.raises(TokenRejected):
        await keys.key_for("forged")

    assert keys.fetches == 3


async def test_keys_older_than_max_age_are_refetched(
    keys: SigningKeys, provider: IdentityProvider, clock: Clock
) -> None:
    await keys.key_for(provider.kid)
    clock.now += 3600

    await keys.key_for(provider.kid)

    assert keys.fetches == 2


async def test_failed_refresh_keeps_the_known_keys(
    keys: SigningKeys, source: ProviderSource, provider: IdentityProvider, clock: Clock
) -> None:
    await keys.key_for(provider.kid)
    clock.now += 3600
    source.down = True

    key = await keys.key_for(provider.kid)

    assert key is not None


async def test_provider_down_from_the_start_is_unavailable(
    keys: SigningKeys, source: ProviderSource, provider: IdentityProvider
) -> None:
    source.down = True

    with pytest.raises(SigningKeysUnavailable):
        await keys.key_for(provider.kid)


async def test_unreachable_jwks_url_is_unavailable(provider: IdentityProvider) -> None:
    # Bound but not listening: connecting is refused at once.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/jwks"
        async with httpx.AsyncClient() as client:
            keys = SigningKeys(HttpKeySource(url, client, timeout_s=2))

            with pytest.raises(SigningKeysUnavailable):
                await keys.key_for(provider.kid)


async def test_token_without_kid_uses_the_only_key(
    keys: SigningKeys, provider: IdentityProvider
) -> None:
    assert await keys.key_for(None) == await keys.key_for(provider.kid)


def test_key_set_keeps_only_rsa_signing_keys(provider: IdentityProvider) -> None:
    rsa_key = provider.jwks()["keys"][0]
    document = {
        "keys": [
            rsa_key,
            {**rsa_key, "kid": "enc", "use": "enc"},
            {**rsa_key, "kid": "ps", "alg": "PS256"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "a", "y": "b"},
        ]
    }

    assert list(parse_key_set(document)) == [rsa_key["kid"]]


def test_key_set_without_keys_is_malformed() -> None:
    with pytest.raises(ValueError, match="no 'keys' list"):
        parse_key_set({"nope": []})
