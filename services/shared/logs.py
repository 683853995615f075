"""Process-wide logging setup: one line per record on stdout, secrets redacted.

Only a service's ``__main__`` calls ``configure``; library code just does
``logger = logging.getLogger(__name__)``. Records become one line each, as text
for people (``make run`` interleaves four services, so every line names its
service) or as JSON objects for log collectors. ``SecretRedactor`` sits on the
handler, so whatever any library logs, bearer tokens, JWTs, passwords in URLs
or ``password=`` pairs and ``sk-`` API keys are masked before they are written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import TextIO

FORMATS = ("text", "json")
REDACTED = "[REDACTED]"

_SECRET_KEYS = (
    r"password|passwd|pwd|secret|client_secret|token|access_token|api_key|apikey"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # JWTs first: a bare token (no "Bearer") is still a credential.
    (
        re.compile(r"\beyJ[\w-]*\.eyJ[\w-]*\.[\w-]*"),
        REDACTED,
    ),
    (re.compile(r"(\bBearer\s+)[\w\-.~+/]+=*", re.IGNORECASE), rf"\g<1>{REDACTED}"),
    # scheme://user:password@host -> keep the user, hide the password.
    (
        re.compile(r"([a-zA-Z][\w+.-]*://[^:/@\s]*:)[^@/\s]+@"),
        rf"\g<1>{REDACTED}@",
    ),
    (
        # key=value, key: value, 'key': 'value' (a dict's repr, JSON), also
        # with a prefix like db_password= or REFLOW_INTERNAL_SECRET=.
        re.compile(
            rf"((?<![A-Za-z0-9])(?:{_SECRET_KEYS})['\"]?\s*[=:]\s*['\"]?)[^\s&;,'\"]+",
            re.IGNORECASE,
        ),
        rf"\g<1>{REDACTED}",
    ),
    (re.compile(r"\bsk-[\w-]{8,}"), f"sk-{REDACTED}"),
)


def redact(text: str) -> str:
    """``text`` with every credential-looking substring replaced by ``[REDACTED]``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class SecretRedactor(logging.Filter):
    """Rewrites a record's message and traceback so they hold no credentials."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            # A record whose args do not fit its format is reported by the
            # handler when it formats it; dropping it here would hide that.
            return True
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class TextFormatter(logging.Formatter):
    """``2025-01-01T12:00:00.123Z INFO notebook services.notebook.server: message``."""

    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _timestamp(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, service, logger, message, exc_info.

    Also ``trace_id`` and ``span_id`` when the record was made inside a trace.
    """

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        # Set by services.shared.tracing's record factory, in a service.
        trace_id = getattr(record, "trace_id", "")
        if trace_id:
            entry["trace_id"] = trace_id
            entry["span_id"] = getattr(record, "span_id", "")
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


class _ServiceHandler(logging.StreamHandler[TextIO]):
    """The handler ``configure`` installs, so a second call can find and replace it."""


def configure(
    service: str, level: str, fmt: str = "text", stream: TextIO | None = None
) -> None:
    """Send every record at ``level`` or above to stdout (or ``stream``), one line each.

    ``fmt`` is "text" or "json". Calling it again replaces the handler it
    installed before rather than duplicating lines; other handlers (pytest's
    capture, for one) are left alone.
    """
    numeric_level = logging.getLevelName(level.strip().upper())
    if not isinstance(numeric_level, int):
        raise ValueError(f"unknown log level {level!r}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; expected one of {FORMATS!r}")
    handler = _ServiceHandler(sys.stdout if stream is None else stream)
    handler.setFormatter(
        JsonFormatter(service) if fmt == "json" else TextFormatter(service)
    )
    handler.addFilter(SecretRedactor())
    root = logging.getLogger()
    for old in root.handlers[:]:
        if isinstance(old, _ServiceHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
