"""Which identity provider the environment selects, and the gateway's defaults."""

from __future__ import annotations

from pathlib import Path

from services.gateway.config import DEV_AUDIENCE, DEV_ISSUER, IdentitySettings, Settings

# Every service needs the shared secret; there is no built-in one.
SECRET = {"REFLOW_INTERNAL_SECRET": "config-tests-internal-secret-0123456789"}


def test_nothing_configured_is_dev_mode_with_the_dev_issuer() -> None:
    settings = IdentitySettings.from_env(SECRET)

    assert settings.dev_mode
    assert (settings.issuer, settings.audience) == (DEV_ISSUER, DEV_AUDIENCE)
    assert settings.data_dir == Path("data/gateway")


def test_clerk_frontend_api_names_its_jwks_and_issuer() -> None:
    settings = IdentitySettings.from_env(
        {**SECRET, "CLERK_FRONTEND_API": "clerk.example.com"}
    )

    assert not settings.dev_mode
    assert settings.jwks_url == "https://clerk.example.com/.well-known/jwks.json"
    assert settings.issuer == "https://clerk.example.com"
    assert settings.audience is None


def test_jwks_url_wins_over_clerk() -> None:
    settings = IdentitySettings.from_env(
        {
            **SECRET,
            "GATEWAY_JWKS_URL": "https://idp.test/keys",
            "CLERK_FRONTEND_API": "clerk.example.com",
        }
    )

    assert settings.jwks_url == "https://idp.test/keys"
    assert settings.issuer is None


def test_defaults_match_the_stack() -> None:
    settings = Settings.from_env(SECRET)

    assert (settings.grpc_port, settings.http_port) == (50050, 8000)
    assert settings.notebook_service_addr == "localhost:50051"
    assert settings.execution_service_addr == "localhost:50052"
    assert settings.assistant_service_addr is None
    assert settings.websocket.queue_size == 1024
