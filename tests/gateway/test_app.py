"""The gateway's HTTP routes besides the WebSocket: liveness and the dev key set."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from tests.gateway.conftest import Gateway


async def test_healthz_answers_ok(gateway: Gateway) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{gateway.http_port}/healthz")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_dev_mode_serves_the_issuers_key_set(gateway: Gateway) -> None:
    url = f"http://127.0.0.1:{gateway.http_port}/.well-known/jwks.json"
    async with httpx.AsyncClient() as client:
        response = await client.get(url)

    assert gateway.identity.dev_issuer is not None
    assert response.json() == gateway.identity.dev_issuer.jwks()
