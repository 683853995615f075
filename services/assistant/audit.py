"""The audit log: one JSON line per tool action the assistant takes.

Every tool call the model makes, whether it succeeded, failed or was refused,
is appended to ``ASSISTANT_AUDIT_LOG`` (default ``<ASSISTANT_DATA_DIR>/
audit.log``) as one line::

    {"time": "2025-01-01T12:00:00.123Z", "user": "ada", "notebook": "nb1",
     "conversation": "c1", "tool": "run_cells", "arguments": {...},
     "outcome": "ok", "duration_ms": 412}

(``"outcome": "error"`` lines also carry ``"error_code"``.) Lines are written
whole, with O_APPEND, by one writer at a time, so concurrent turns never
interleave inside a line. No token or API key ever reaches this module; the
string values of the arguments (cell code, mostly) go through the same
redaction as the service logs, so a password the model wrote into a cell is
masked here too.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from services.shared.logs import redact

if TYPE_CHECKING:
    from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditEntry:
    """One tool action."""

    user: str
    notebook_id: str
    conversation_id: str
    tool: str
    arguments: Any
    ok: bool
    duration_ms: int
    error_code: str = ""


class AuditLog:
    """Appends AuditEntry lines to a file (created, with its folder, on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()

    async def record(self, entry: AuditEntry) -> None:
        """Append ``entry``; a failure to write is logged, never raised."""
        line = json.dumps(_line(entry), ensure_ascii=False, separators=(",", ":"))
        async with self._lock:
            try:
                await asyncio.to_thread(_append, self.path, line + "\n")
            except OSError:
                logger.exception("cannot write the audit log %s", self.path)


def _line(entry: AuditEntry) -> dict[str, Any]:
    moment = datetime.now(UTC).isoformat(timespec="milliseconds")
    line: dict[str, Any] = {
        "time": moment.replace("+00:00", "Z"),
        "user": entry.user,
        "notebook": entry.notebook_id,
        "conversation": entry.conversation_id,
        "tool": entry.tool,
        "arguments": _redacted(entry.arguments),
        "outcome": "ok" if entry.ok else "error",
        "duration_ms": entry.duration_ms,
    }
    if not entry.ok:
        line["error_code"] = entry.error_code
    return line


def _redacted(value: Any) -> Any:
    """``value`` with every string in it redacted (before JSON escaping)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {str(key): _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    return value


def _append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as file:
        file.write(text)
