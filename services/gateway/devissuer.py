"""The development token issuer: an RSA key in the data directory signing user tokens.

With no identity provider configured the gateway issues its own tokens, so a
laptop needs no account anywhere and still runs the production checks: tokens
are RS256 JWTs with ``kid``, ``iss``, ``aud``, ``iat`` and ``exp``, and the
gateway verifies them against this issuer's JWKS with the same
``SigningKeys``/``UserAuthenticator`` code that verifies Clerk's.

The key is created on first use (2048-bit RSA, PKCS#8 PEM, mode 0600, in a
0700 directory) and kept, so tokens survive restarts. Creation writes a
temporary file and hard-links it into place, so two processes starting at
once (the gateway and ``make token``) end up sharing one key. The key id is
the RFC 7638 thumbprint of the public key: stable for a key, new for a new one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any, Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

if TYPE_CHECKING:
    from pathlib import Path

logger = logging.getLogger(__name__)

KEY_FILE: Final = "dev-issuer-key.pem"
ALGORITHM: Final = "RS256"


class DevIssuer:
    """Signs development tokens and publishes the key set that verifies them."""

    def __init__(
        self, private_key: rsa.RSAPrivateKey, issuer: str, audience: str
    ) -> None:
        self._private_key = private_key
        self._issuer = issuer
        self._audience = audience
        public = json.loads(RSAAlgorithm.to_jwk(private_key.public_key()))
        self._public_jwk: dict[str, Any] = {
            "kty": "RSA",
            "n": public["n"],
            "e": public["e"],
        }
        self.kid = _thumbprint(self._public_jwk)

    @classmethod
    def load_or_create(cls, data_dir: Path, issuer: str, audience: str) -> DevIssuer:
        """The issuer whose key is in ``data_dir`` (created if there is none)."""
        return cls(_load_or_create_key(data_dir / KEY_FILE), issuer, audience)

    def jwks(self) -> dict[str, Any]:
        """The public key set, as served at ``/.well-known/jwks.json``."""
        key = {**self._public_jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}
        return {"keys": [key]}

    def mint(self, user: str, ttl_s: float) -> str:
        """A token for ``user`` valid for ``ttl_s`` seconds from now."""
        if not user:
            raise ValueError("cannot mint a token for an empty user name")
        now = int(time.time())
        claims = {
            "sub": user,
            "iss": self._issuer,
            "aud": self._audience,
            "iat": now,
            "exp": now + int(ttl_s),
        }
        return jwt.encode(
            claims, self._private_key, algorithm=ALGORITHM, headers={"kid": self.kid}
        )


def _thumbprint(public_jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 over the required members, sorted, without whitespace."""
    canonical = json.dumps(public_jwk, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _load_or_create_key(path: Path) -> rsa.RSAPrivateKey:
    if not path.exists():
        _create_key(path)
    if path.stat().st_mode & 0o077:
        logger.warning("%s is readable by other users; it should have mode 0600", path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{path} does not hold an RSA private key")
    return key


def _create_key(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)
            file.flush()
            os.fsync(file.fileno())
        # link() fails if the key appeared meanwhile: then that key wins.
        os.link(temporary, path)
        logger.info("created the development issuer's key in %s", path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink(missing_ok=True)
