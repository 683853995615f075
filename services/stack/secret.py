"""The internal secret `make run` gives its services, kept in the data directory.

There is no built-in secret (a known one would let any notebook cell act as
any user), so the stack makes one at random the first time, in a file only
its user can read, and reuses it on every later start: tokens printed by
``make internal-token`` keep working across restarts. An exported
``REFLOW_INTERNAL_SECRET`` wins and is not written anywhere.
"""

from __future__ import annotations

import os
import secrets
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

FILE_NAME: Final = "internal-secret"
VARIABLE: Final = "REFLOW_INTERNAL_SECRET"


def internal_secret(data_dir: Path, env: Mapping[str, str]) -> str:
    """The exported secret, else the one in ``data_dir`` (made if missing)."""
    exported = env.get(VARIABLE, "")
    if exported:
        return exported
    path = data_dir / FILE_NAME
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(secrets.token_urlsafe(48) + "\n")
    return path.read_text(encoding="ascii").strip()
