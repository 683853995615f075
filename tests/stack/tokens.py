"""Tokens a test mints itself: expired, signed by a stranger, for another audience.

Each starts from a real token's header and claims (a dev token from the
gateway's own command), so exactly one thing about it is wrong.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

if TYPE_CHECKING:
    from pathlib import Path

DEV_KEY_FILE: Final = "dev-issuer-key.pem"
ALGORITHM: Final = "RS256"


def new_key() -> rsa.RSAPrivateKey:
    """A fresh RSA key nobody has published."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def dev_key(gateway_data_dir: Path) -> rsa.RSAPrivateKey:
    """The dev issuer's private key, from the gateway's data directory."""
    key = serialization.load_pem_private_key(
        (gateway_data_dir / DEV_KEY_FILE).read_bytes(), password=None
    )
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def resigned(token: str, key: rsa.RSAPrivateKey, **changes: Any) -> str:
    """``token``'s header and claims, with ``changes``, signed with ``key``."""
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    claims.update(changes)
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": header["kid"]})


def signed(key: rsa.RSAPrivateKey, kid: str, **claims: Any) -> str:
    """A token with ``claims`` (iat/exp filled in for an hour) signed with ``key``."""
    now = int(time.time())
    body = {"iat": now, "exp": now + 3600, **claims}
    return jwt.encode(body, key, algorithm=ALGORITHM, headers={"kid": kid})
