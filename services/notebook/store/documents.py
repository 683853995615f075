"""The JSON encoding of notebooks and listing page tokens, shared by the stores.

A stored document carries a `"format"` number so a later layout can be told
apart from this one (and migrated) instead of being misread. Datetimes are
ISO-8601 in UTC, enums are stored by value, and a cell's `result` is stored as
given: it is already the proto-JSON of a CellResult (see models.py).

A cell has a document of its own (cell_to_document), so a store that keeps
cells apart from their notebook (the DynamoDB store) encodes them the same way.

Decoding trusts nothing: a document of the wrong shape raises DocumentError,
which a store turns into NotebookCorrupt naming the notebook.

Page tokens are opaque to clients but are simply the listing key, (create_time,
id), of the last notebook on the previous page plus the owner they were issued
for, so a page never depends on an offset that concurrent creates would shift.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from services.notebook.errors import InvalidPageToken
from services.notebook.models import (
    Cell,
    CellId,
    CellStatus,
    CellType,
    Notebook,
    NotebookId,
    RunMode,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

FORMAT = 1

# The order of a listing, newest first: (create_time, id) descending. The id
# breaks ties so that notebooks created in the same instant still page stably.
ListingKey = tuple[datetime, NotebookId]

_E = TypeVar("_E", CellType, CellStatus, RunMode)


class DocumentError(ValueError):
    """A stored document that does not have the shape this module writes."""


def notebook_to_document(notebook: Notebook) -> dict[str, Any]:
    """Return the JSON-able document of a notebook."""
    return {
        "format": FORMAT,
        "id": notebook.id,
        "owner": notebook.owner,
        "name": notebook.name,
        "revision": notebook.revision,
        "create_time": time_to_text(notebook.create_time),
        "update_time": time_to_text(notebook.update_time),
        "database_url": notebook.database_url,
        "run_mode": notebook.run_mode.value,
        "cells": [cell_to_document(cell) for cell in notebook.cells],
    }


def notebook_from_document(document: object) -> Notebook:
    """Return the notebook a document describes; raise DocumentError if it
    is not a document notebook_to_document wrote."""
    fields = _mapping(document, "document")
    if fields.get("format") != FORMAT:
        raise DocumentError(f"format is {fields.get('format')!r}, expected {FORMAT}")
    return Notebook(
        id=NotebookId(_text(fields, "id")),
        owner=_text(fields, "owner"),
        name=_text(fields, "name"),
        revision=_integer(fields, "revision"),
        create_time=time_from_text(_text(fields, "create_time")),
        update_time=time_from_text(_text(fields, "update_time")),
        database_url=_text(fields, "database_url"),
        run_mode=run_mode_from(fields.get("run_mode")),
        cells=tuple(
            cell_from_document(cell, f"cells[{position}]")
            for position, cell in enumerate(_list(fields, "cells"))
        ),
    )


def time_to_text(moment: datetime) -> str:
    """Return an aware datetime as ISO-8601 in UTC."""
    if moment.tzinfo is None:
        # A naive datetime has no defined instant; storing it would silently
        # shift it by the server's UTC offset when read back.
        raise ValueError(f"datetime {moment!r} has no time zone")
    return moment.astimezone(UTC).isoformat()


def time_from_text(text: str) -> datetime:
    """Parse what time_to_text wrote; raise DocumentError otherwise."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise DocumentError(f"{text!r} is not an ISO-8601 datetime") from None
    if moment.tzinfo is None:
        raise DocumentError(f"{text!r} has no time zone")
    return moment.astimezone(UTC)


def encode_page_token(owner: str, last: ListingKey) -> str:
    """Return the token of the page after the notebook whose key is last."""
    create_time, notebook_id = last
    payload = {"owner": owner, "after": [time_to_text(create_time), notebook_id]}
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode("ascii")


def decode_page_token(owner: str, token: str) -> ListingKey:
    """Return the key a page token of this owner continues after; raise
    InvalidPageToken for anything encode_page_token did not write for them."""
    try:
        payload = json.loads(
            base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True)
        )
        fields = _mapping(payload, "page token")
        after = _list(fields, "after")
        if _text(fields, "owner") != owner or len(after) != 2:
            raise InvalidPageToken()
        create_time, notebook_id = after
        if not isinstance(create_time, str) or not isinstance(notebook_id, str):
            raise InvalidPageToken()
        return time_from_text(create_time), NotebookId(notebook_id)
    except (UnicodeError, binascii.Error, ValueError):
        # json.JSONDecodeError and DocumentError are ValueErrors too.
        raise InvalidPageToken() from None


def cell_to_document(cell: Cell) -> dict[str, Any]:
    """Return the JSON-able document of one cell (stores that keep cells
    apart from their notebook use it directly)."""
    return {
        "id": cell.id,
        "type": cell.type.value,
        "code": cell.code,
        "result_name": cell.result_name,
        "status": cell.status.value,
        "result": None if cell.result is None else dict(cell.result),
        "disabled": cell.disabled,
    }


def cell_from_document(document: object, where: str = "cell") -> Cell:
    """Return the cell a document describes; raise DocumentError if it is not
    one cell_to_document wrote. `where` names it in error messages."""
    fields = _mapping(document, where)
    result = fields.get("result")
    if result is not None and not isinstance(result, dict):
        raise DocumentError(f"{where}.result is not an object or null")
    return Cell(
        id=CellId(_text(fields, "id", where)),
        type=_enum(CellType, _text(fields, "type", where), f"{where}.type"),
        code=_text(fields, "code", where),
        result_name=_text(fields, "result_name", where),
        status=_enum(CellStatus, _text(fields, "status", where), f"{where}.status"),
        result=result,
        # Documents written before cells could be disabled lack the key.
        disabled=fields.get("disabled") is True,
    )


def run_mode_from(value: object) -> RunMode:
    """A stored run mode; documents written before run modes lack it."""
    if value is None:
        return RunMode.AUTOMATIC
    if not isinstance(value, str):
        raise DocumentError("run_mode is not a string")
    return _enum(RunMode, value, "run_mode")


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise DocumentError(f"{where} is not an object")
    return value


def _text(fields: Mapping[str, Any], key: str, where: str = "document") -> str:
    value = fields.get(key)
    if not isinstance(value, str):
        raise DocumentError(f"{where}.{key} is not a string")
    return value


def _integer(fields: Mapping[str, Any], key: str) -> int:
    value = fields.get(key)
    # bool is an int subclass, but true is no revision.
    if not isinstance(value, int) or isinstance(value, bool):
        raise DocumentError(f"document.{key} is not an integer")
    return value


def _list(fields: Mapping[str, Any], key: str) -> list[Any]:
    value = fields.get(key)
    if not isinstance(value, list):
        raise DocumentError(f"{key} is not an array")
    return value


def _enum(kind: type[_E], value: str, where: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        raise DocumentError(f"{where} {value!r} is not a known value") from None
