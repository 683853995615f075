"""Request field checks shared by the services, reported field by field.

Every problem found in a request is collected, so a client fixing its input
sees all of them at once in the BadRequest detail rather than one per try.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

from services.shared.errors import InvalidArgument
from services.shared.patterns import CONTROL, ID, ID_MAX_CHARS

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+]*://")

ID_RULE = f"must be 1-{ID_MAX_CHARS} letters, digits, '-' or '_'"

MAX_NAME_CHARS = 200
MAX_URL_CHARS = 4096
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 50


@dataclass
class Violations:
    """Field problems found so far in one request."""

    found: list[tuple[str, str]] = field(default_factory=list)

    def add(self, field_name: str, description: str) -> None:
        self.found.append((field_name, description))

    def raise_if_any(self) -> None:
        """Raise InvalidArgument naming every bad field."""
        if self.found:
            summary = "; ".join(f"{name}: {text}" for name, text in self.found)
            raise InvalidArgument(
                f"invalid request: {summary}", field_violations=self.found
            )

    def identifier(self, field_name: str, value: str) -> None:
        """A notebook or cell id: 1-64 letters, digits, '-' or '_'."""
        if not value:
            self.add(field_name, "is required")
        elif not ID.fullmatch(value):
            self.add(field_name, ID_RULE)

    def name(self, field_name: str, value: str, required: bool) -> None:
        """A display name: printable, at most MAX_NAME_CHARS characters."""
        if required and not value.strip():
            self.add(field_name, "is required")
        elif len(value) > MAX_NAME_CHARS:
            self.add(field_name, f"must be at most {MAX_NAME_CHARS} characters")
        elif CONTROL.search(value):
            self.add(field_name, "must not contain control characters")

    def code(self, field_name: str, value: str, max_bytes: int) -> None:
        """Cell source: at most max_bytes of UTF-8."""
        if len(value) > max_bytes or len(value.encode()) > max_bytes:
            self.add(field_name, f"must be at most {max_bytes} bytes")

    def result_name(self, field_name: str, value: str) -> None:
        """A SQL cell's result name: a Python identifier that is not private."""
        if not value.isidentifier() or keyword.iskeyword(value):
            self.add(field_name, "must be a Python identifier")
        elif value.startswith("_"):
            self.add(field_name, "must not start with '_' (private names)")

    def database_url(self, field_name: str, value: str) -> None:
        """A SQLAlchemy URL such as postgresql://user:pw@host/db."""
        if not value:
            self.add(field_name, "is required")
        elif len(value) > MAX_URL_CHARS or not _URL.match(value):
            self.add(field_name, "must be a URL like dialect://user:pw@host/db")
        elif CONTROL.search(value):
            # A NUL or newline in a URL reaches the database driver's
            # connect string, where it can cut or smuggle parameters.
            self.add(field_name, "must not contain control characters")

    def not_negative(self, field_name: str, value: int) -> None:
        if value < 0:
            self.add(field_name, "must not be negative")


def page_size(value: int, violations: Violations) -> int:
    """The page size to use: 0 means the default, above the maximum is capped."""
    violations.not_negative("page_size", value)
    if value == 0:
        return DEFAULT_PAGE_SIZE
    return min(value, MAX_PAGE_SIZE)
