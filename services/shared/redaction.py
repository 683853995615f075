"""Masking secrets before they leave a service (responses and logs)."""

from __future__ import annotations

import re

# scheme://user:password@host -> scheme://user:***@host. A URL without a
# password (or without credentials) comes back unchanged.
_URL_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@]*):[^@]*@")
# Drivers also take the password as a query parameter (?password=...).
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:password|passwd|pwd)=)[^&]*", re.I)


def mask_url_password(url: str) -> str:
    """Replace the password in a URL with *** (SQLAlchemy URLs included)."""
    masked = _URL_PASSWORD.sub(r"\g<head>:***@", url, count=1)
    return _QUERY_PASSWORD.sub(r"\g<head>***", masked)
