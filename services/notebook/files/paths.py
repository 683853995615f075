"""Checking a file path a client sent, before it reaches the file system.

A path is relative to the notebook's directory, `/`-separated, and made of
ordinary names: no empty, `.` or `..` part, no leading `/`, no backslash or
control character (a Windows separator or a NUL could mean something else
to the OS). Checking the text, rather than resolving and comparing, means
the check does not depend on what is on disk; the local store also refuses
to follow symbolic links.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.shared.validation import Violations

MAX_PATH_CHARS = 255
MAX_PART_CHARS = 100
_BAD_CHARACTERS = re.compile(r"[\x00-\x1f\x7f\\:]")


def check_path(check: Violations, field_name: str, path: str) -> None:
    """Add a violation on `field_name` unless `path` is a safe relative path."""
    problem = _problem(path)
    if problem:
        check.add(field_name, problem)


def _problem(path: str) -> str | None:
    if not path:
        return "is required"
    if len(path) > MAX_PATH_CHARS:
        return f"must be at most {MAX_PATH_CHARS} characters"
    if _BAD_CHARACTERS.search(path):
        return "must not contain control characters, '\\' or ':'"
    if path.startswith("/"):
        return "must be relative to the notebook's directory"
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "must not contain empty, '.' or '..' parts"
    if any(len(part) > MAX_PART_CHARS for part in parts):
        return f"each part must be at most {MAX_PART_CHARS} characters"
    return None
