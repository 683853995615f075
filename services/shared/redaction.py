"""Masking secrets before they leave a service (responses and logs)."""

from __future__ import annotations

from services.shared.patterns import QUERY_PASSWORD, URL_PASSWORD


def mask_url_password(url: str) -> str:
    """Replace the password in a URL with *** (SQLAlchemy URLs included).

    A URL without a password (or without credentials) comes back unchanged.
    """
    masked = URL_PASSWORD.sub(r"\g<head>:***@", url, count=1)
    return QUERY_PASSWORD.sub(r"\g<head>***", masked)
