"""Print a development token: ``python -m services.gateway.devtoken USER [--ttl-s N]``.

The token is signed with the development issuer's key in ``GATEWAY_DATA_DIR``
(created if missing, exactly as the gateway would), so a gateway in dev mode
using the same data directory accepts it. stdout carries only the token, so
``TOKEN=$(python -m services.gateway.devtoken alice)`` works; warnings go to
stderr. ``make token USER=alice`` runs this.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING, Final

from services.gateway.config import IdentitySettings
from services.gateway.devissuer import DevIssuer

if TYPE_CHECKING:
    from collections.abc import Sequence

logger = logging.getLogger(__name__)

DEFAULT_TTL_S: Final = 24 * 3600.0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and print a token for the user they name."""
    parser = argparse.ArgumentParser(
        prog="python -m services.gateway.devtoken",
        description="Print a token the gateway accepts in dev mode.",
    )
    parser.add_argument("user", help="the user id (the token's sub)")
    parser.add_argument(
        "--ttl-s", type=float, default=DEFAULT_TTL_S, help="lifetime in seconds"
    )
    args = parser.parse_args(argv)
    if not args.user:
        parser.error("USER must not be empty")
    settings = IdentitySettings.from_env()
    if not settings.dev_mode:
        logger.warning(
            "an identity provider is configured (%s): the gateway will refuse "
            "development tokens",
            settings.jwks_url,
        )
    issuer = DevIssuer.load_or_create(
        settings.data_dir, settings.issuer or "", settings.audience or ""
    )
    print(issuer.mint(args.user, args.ttl_s))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sys.exit(main())
