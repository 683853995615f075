"""The identity provider's signing keys (a JWKS), cached and refreshed on demand.

``SigningKeys.key_for(kid)`` answers from a cache of the provider's RSA keys.
The cache is refreshed:

* when it is older than ``max_age_s`` (so a key the provider withdrew stops
  being accepted), on the next lookup;
* when a token names a ``kid`` the cache does not hold: providers rotate keys
  by publishing a new one, and the first token signed with it must be
  accepted without restarting the gateway. Those refreshes are rate-limited
  to one per ``min_refresh_s``, because anybody can send tokens with made-up
  key ids and must not be able to make the gateway hammer the provider.

Refreshes are single-flight: callers waiting for one reuse its result. A
failed refresh keeps the keys already known (a provider outage does not lock
everybody out); with no keys at all, lookups fail with
``SigningKeysUnavailable`` (UNAVAILABLE), not UNAUTHENTICATED, because the
token may well be fine.

Only RSA keys meant for signatures (``use`` absent or ``sig``, ``alg`` absent
or RS256) are kept. Where the keys come from is a ``KeySource``: over HTTP
from the provider's JWKS URL, or, for the development issuer, its key set
handed over directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import jwt

from services.gateway.errors import SigningKeysUnavailable, TokenRejected

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

logger = logging.getLogger(__name__)

ALGORITHM = "RS256"


class KeySource(Protocol):
    """Where a JWKS document comes from."""

    @property
    def location(self) -> str:
        """Where the keys come from, for messages (a URL)."""
        ...

    async def fetch(self) -> Mapping[str, Any]:
        """The current JWKS document; raises on any failure."""
        ...


class HttpKeySource:
    """A JWKS fetched from an identity provider's URL."""

    def __init__(self, url: str, client: httpx.AsyncClient, timeout_s: float) -> None:
        self._url = url
        self._client = client
        self._timeout_s = timeout_s

    @property
    def location(self) -> str:
        return self._url

    async def fetch(self) -> Mapping[str, Any]:
        response = await self._client.get(self._url, timeout=self._timeout_s)
        response.raise_for_status()
        document = response.json()
        if not isinstance(document, dict):
            raise ValueError("the key set is not a JSON object")
        return document


class StaticKeySource:
    """A JWKS held in memory (the development issuer's own)."""

    def __init__(self, document: Mapping[str, Any], location: str) -> None:
        self._document = document
        self._location = location

    @property
    def location(self) -> str:
        return self._location

    async def fetch(self) -> Mapping[str, Any]:
        return self._document


class SigningKeys:
    """RSA public keys by key id, fetched from a ``KeySource`` and cached."""

    def __init__(
        self,
        source: KeySource,
        max_age_s: float = 3600.0,
        min_refresh_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._max_age_s = max_age_s
        self._min_refresh_s = min_refresh_s
        self._clock = clock
        self._keys: dict[str | None, RSAPublicKey] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._unknown_refresh_at: float | None = None
        self._generation = 0
        self._lock = asyncio.Lock()
        self.fetches = 0
        """How many times the source was asked (for tests and metrics)."""

    async def key_for(self, kid: str | None) -> RSAPublicKey:
        """The key that verifies tokens with this ``kid``; raises if unknown."""
        refreshed = False
        if self._needs_refresh():
            await self._refresh()
            refreshed = True
        key = self._lookup(kid)
        if key is None and not refreshed and self._may_refresh_for_unknown():
            self._unknown_refresh_at = self._clock()
            await self._refresh()
            key = self._lookup(kid)
        if key is not None:
            return key
        if self._fetched_at is None:
            raise SigningKeysUnavailable(self._source.location)
        raise TokenRejected(
            "token is signed with an unknown key", reason="SIGNING_KEY_UNKNOWN"
        )

    def _lookup(self, kid: str | None) -> RSAPublicKey | None:
        key = self._keys.get(kid)
        if key is None and kid is None and len(self._keys) == 1:
            # A token without a kid is unambiguous when there is one key.
            key = next(iter(self._keys.values()))
        return key

    def _needs_refresh(self) -> bool:
        now = self._clock()
        fresh = (
            self._fetched_at is not None and now - self._fetched_at < self._max_age_s
        )
        # After a failed attempt, wait before asking the provider again.
        recently_tried = (
            self._attempted_at is not None
            and now - self._attempted_at < self._min_refresh_s
        )
        return not fresh and not recently_tried

    def _may_refresh_for_unknown(self) -> bool:
        last = self._unknown_refresh_at
        return last is None or self._clock() - last >= self._min_refresh_s

    async def _refresh(self) -> None:
        generation = self._generation
        async with self._lock:
            if self._generation != generation:
                return  # another caller refreshed while this one waited
            self._generation += 1
            self._attempted_at = self._clock()
            self.fetches += 1
            try:
                keys = parse_key_set(await self._source.fetch())
            except (httpx.HTTPError, ValueError) as error:
                # Keep what is known: an outage must not lock everybody out.
                logger.warning(
                    "cannot fetch signing keys from %s: %s",
                    self._source.location,
                    error,
                )
                return
            self._keys = keys
            self._fetched_at = self._clock()
            logger.debug(
                "loaded %d signing keys from %s", len(keys), self._source.location
            )


def parse_key_set(document: Mapping[str, Any]) -> dict[str | None, RSAPublicKey]:
    """The usable RSA signature keys of a JWKS, by kid; ValueError if malformed."""
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise ValueError("the key set has no 'keys' list")
    keys: dict[str | None, RSAPublicKey] = {}
    for entry in entries:
        if not _is_rsa_signing_key(entry):
            continue
        try:
            key = jwt.PyJWK(entry, algorithm=ALGORITHM).key
        except jwt.PyJWTError as error:
            logger.debug("skipping an unusable key %r: %s", entry.get("kid"), error)
            continue
        kid = entry.get("kid")
        keys[kid if isinstance(kid, str) else None] = key
    return keys


def _is_rsa_signing_key(entry: object) -> bool:
    return (
        isinstance(entry, dict)
        and entry.get("kty") == "RSA"
        and entry.get("use", "sig") == "sig"
        and entry.get("alg", ALGORITHM) == ALGORITHM
    )
