"""The development issuer: its key file, its key set, and the devtoken command."""

from __future__ import annotations

import stat
from typing import TYPE_CHECKING

import pytest

from services.gateway import devtoken
from services.gateway.auth import UserAuthenticator
from services.gateway.config import DEV_AUDIENCE, DEV_ISSUER
from services.gateway.devissuer import KEY_FILE, DevIssuer
from services.gateway.jwks import SigningKeys, StaticKeySource

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory whose key the first test to use it creates."""
    return tmp_path_factory.mktemp("dev-issuer") / "gateway"


def authenticator_for(issuer: DevIssuer) -> UserAuthenticator:
    keys = SigningKeys(StaticKeySource(issuer.jwks(), "test"))
    return UserAuthenticator(keys, issuer=DEV_ISSUER, audience=DEV_AUDIENCE)


def test_key_is_created_readable_only_by_its_owner(data_dir: Path) -> None:
    DevIssuer.load_or_create(data_dir, DEV_ISSUER, DEV_AUDIENCE)

    mode = stat.S_IMODE((data_dir / KEY_FILE).stat().st_mode)
    assert mode == 0o600


def test_key_is_kept_across_loads(data_dir: Path) -> None:
    first = DevIssuer.load_or_create(data_dir, DEV_ISSUER, DEV_AUDIENCE)

    second = DevIssuer.load_or_create(data_dir, DEV_ISSUER, DEV_AUDIENCE)

    assert first.kid == second.kid
    assert first.jwks() == second.jwks()


async def test_minted_token_verifies_against_the_key_set(data_dir: Path) -> None:
    issuer = DevIssuer.load_or_create(data_dir, DEV_ISSUER, DEV_AUDIENCE)

    user = await authenticator_for(issuer).authenticate(issuer.mint("ada", 60))

    assert user == "ada"


async def test_devtoken_prints_only_a_token_the_gateway_accepts(
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(data_dir))
    for name in (
        "GATEWAY_JWKS_URL",
        "CLERK_FRONTEND_API",
        "GATEWAY_JWT_ISSUER",
        "GATEWAY_JWT_AUDIENCE",
    ):
        monkeypatch.delenv(name, raising=False)

    status = devtoken.main(["grace", "--ttl-s", "60"])

    token = capsys.readouterr().out.strip()
    issuer = DevIssuer.load_or_create(data_dir, DEV_ISSUER, DEV_AUDIENCE)
    assert status == 0
    assert await authenticator_for(issuer).authenticate(token) == "grace"
