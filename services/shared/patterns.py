"""The shapes of identifiers and secrets, written once for every service.

Ids are what clients name notebooks, cells and conversations with; they end
up in file names, metadata headers and log lines, so they are short and
plain ASCII. A user name (a token's ``sub``) is what an identity provider
chose: any printable ASCII without spaces, at most 255 characters (OpenID
Connect's own bound). The password patterns find the secret of a database URL
(``scheme://user:SECRET@host`` or ``?password=SECRET``) to mask it. This module
imports nothing but ``re``: the kernel uses it too.
"""

from __future__ import annotations

import re
from typing import Final

ID_MAX_CHARS: Final = 64
ID: Final = re.compile(rf"[A-Za-z0-9_-]{{1,{ID_MAX_CHARS}}}")
"""A notebook, cell, run or conversation id (use ``fullmatch``)."""

USER_MAX_CHARS: Final = 255
USER: Final = re.compile(rf"[!-~]{{1,{USER_MAX_CHARS}}}")
"""A user name: printable ASCII, no spaces (use ``fullmatch``)."""

CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
"""A control character, which no name or URL may hold."""

URL_PASSWORD: Final = re.compile(
    r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@]*):(?P<secret>[^@]*)@"
)
"""The password of ``scheme://user:password@host`` (group ``secret``)."""

QUERY_PASSWORD: Final = re.compile(
    r"(?P<head>[?&](?:password|passwd|pwd)=)(?P<secret>[^&]*)", re.IGNORECASE
)
"""A password given as a query parameter, as some drivers take it."""
