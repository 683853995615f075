"""A stack whose gateway trusts an identity provider: issuer and audience enforced.

The provider is a JWKS document served by this test on loopback (what Clerk
or any OIDC provider publishes); the stack is started with GATEWAY_JWKS_URL,
GATEWAY_JWT_ISSUER and GATEWAY_JWT_AUDIENCE pointing at it, so the gateway
has no dev issuer and verifies exactly as it would in production.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Final

import pytest
from jwt.algorithms import RSAAlgorithm

from tests.stack.grpcurl import grpcurl
from tests.stack.stack_process import READY_LINE, launch, stack_env
from tests.stack.tokens import new_key, signed

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric import rsa

    from tests.stack.stack_process import RunningStack

ISSUER: Final = "https://issuer.example.test"
AUDIENCE: Final = "reflow-tests"
KID: Final = "test-key-1"
LIST: Final = "reflow.notebook.v1.NotebookService/ListNotebooks"


@pytest.fixture(scope="module")
def provider_key() -> rsa.RSAPrivateKey:
    return new_key()


@pytest.fixture(scope="module")
def jwks_url(provider_key: rsa.RSAPrivateKey) -> Iterator[str]:
    """The provider's key set, served over HTTP on loopback."""
    public = json.loads(RSAAlgorithm.to_jwk(provider_key.public_key()))
    body = json.dumps({"keys": [{**public, "kid": KID, "use": "sig", "alg": "RS256"}]})

    class KeySet(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # quiet: the gateway logs its fetches

    server = ThreadingHTTPServer(("127.0.0.1", 0), KeySet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def provider_stack(
    jwks_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStack]:
    data_dir: Path = tmp_path_factory.mktemp("provider-stack")
    env = stack_env(
        data_dir,
        {
            "GATEWAY_JWKS_URL": jwks_url,
            "GATEWAY_JWT_ISSUER": ISSUER,
            "GATEWAY_JWT_AUDIENCE": AUDIENCE,
            # Runs no cells: skip warming the kernel zygote (and so its
            # sandbox, which needs the zygote).
            "EXECUTION_USE_ZYGOTE": "0",
            "EXECUTION_SANDBOX": "off",
        },
    )
    running = launch(env)
    try:
        running.wait_for_line(READY_LINE, 90.0)
        yield running
    finally:
        running.close()


def test_banner_offers_no_dev_token(provider_stack: RunningStack) -> None:
    assert "No dev token (GATEWAY_JWKS_URL is set" in provider_stack.output()


def test_provider_token_for_our_audience_is_accepted(
    provider_stack: RunningStack, provider_key: rsa.RSAPrivateKey
) -> None:
    token = signed(provider_key, KID, sub="user_2x", iss=ISSUER, aud=AUDIENCE)

    result = grpcurl(provider_stack.target, LIST, token=token, data={})

    assert result.returncode == 0, result.stderr


def test_provider_token_for_another_audience_is_unauthenticated(
    provider_stack: RunningStack, provider_key: rsa.RSAPrivateKey
) -> None:
    token = signed(provider_key, KID, sub="user_2x", iss=ISSUER, aud="another-app")

    result = grpcurl(provider_stack.target, LIST, token=token, data={})

    assert "Code: Unauthenticated" in result.stderr
    assert "audience" in result.stderr


def test_provider_token_from_another_issuer_is_unauthenticated(
    provider_stack: RunningStack, provider_key: rsa.RSAPrivateKey
) -> None:
    token = signed(
        provider_key, KID, sub="user_2x", iss="https://other.test", aud=AUDIENCE
    )

    result = grpcurl(provider_stack.target, LIST, token=token, data={})

    assert "Code: Unauthenticated" in result.stderr
