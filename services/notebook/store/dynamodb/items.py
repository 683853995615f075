"""How a notebook is laid out in DynamoDB items, both ways; no I/O here.

One table, one partition per notebook (``PK = "NB#<id>"``):

``SK = "META"``
    The notebook without its cells' contents: id, owner, name, revision,
    times, database URL, the cell count, and the cell list in order, each
    entry ``[cell id, write id, part count]`` naming where that cell's content
    lives. Also ``incarnation`` (the write id of the create, so a notebook
    deleted and created again under the same id is never mistaken for the old
    one), ``commit`` (the write id of the last create or put, to recognise our
    own write when a retried request finds it already applied) and the GSI
    keys ``owner`` / ``listing``.

``SK = "CELL#<incarnation>#<cell id>#<write id>#<part>"``
    One cell's document (documents.cell_to_document), as UTF-8 JSON,
    zlib-compressed and cut into parts of at most PART_BYTES, so a cell of
    any size fits DynamoDB's 400 KB item limit. Cell items are immutable: a
    changed cell is written under a new write id and the meta item is
    switched to it, which is what makes a put atomic however many items it
    writes (see the package docstring).

The listing GSI (``owner`` hash, ``listing`` range) holds the meta items'
summary fields; ``listing`` is ``"<create_time, fixed width>#<id>"``, so
sorting it descending is the (create_time, id) order of documents.ListingKey.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any, Final

from services.notebook.models import CellId, Notebook, NotebookId, NotebookSummary
from services.notebook.store.documents import (
    FORMAT,
    DocumentError,
    cell_from_document,
    cell_to_document,
    run_mode_from,
    time_from_text,
    time_to_text,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from datetime import datetime

    from services.notebook.models import Cell

Item = dict[str, Any]
"""An item in the low-level client's attribute-value form ({"S": ...})."""

Key = tuple[str, str]
"""(PK, SK)."""

META: Final = "META"
LISTING_INDEX: Final = "owner-listing"

PART_BYTES: Final = 350_000
"""Compressed cell bytes per item: 400 KB (409,600 bytes) less room for the
keys (PK up to 2 KB, SK up to 1 KB) and attribute names."""

MAX_ITEM_BYTES: Final = 400 * 1024
META_BYTES_LIMIT: Final = 380_000
"""The meta item's budget, with a margin under MAX_ITEM_BYTES for the
estimate in item_size() being an estimate."""

SUMMARY_ATTRIBUTES: Final = (
    "id",
    "owner",
    "name",
    "revision",
    "create_time",
    "update_time",
    "database_url",
    "cell_count",
    "run_mode",
)
"""What the listing GSI projects: exactly what a NotebookSummary needs."""


@dataclass(frozen=True)
class CellRef:
    """Where one cell's content lives: its write and how many parts it has."""

    cell_id: CellId
    write_id: str
    parts: int


@dataclass(frozen=True)
class Meta:
    """A meta item, decoded: the notebook's fields and where its cells are."""

    notebook: Notebook  # with no cells: those are loaded through refs
    incarnation: str
    commit: str
    refs: tuple[CellRef, ...]


def partition(notebook_id: str) -> str:
    """The PK of a notebook's items."""
    return f"NB#{notebook_id}"


def key_item(key: Key) -> Item:
    """The attribute-value form of a (PK, SK) key."""
    return {"PK": {"S": key[0]}, "SK": {"S": key[1]}}


def meta_key(notebook_id: str) -> Key:
    """The key of a notebook's meta item."""
    return partition(notebook_id), META


def cells_prefix(incarnation: str) -> str:
    """The SK prefix of every cell item of one incarnation of a notebook."""
    return f"CELL#{incarnation}#"


def part_keys(notebook_id: str, incarnation: str, ref: CellRef) -> list[Key]:
    """The keys of a cell's parts, in order."""
    return [
        (
            partition(notebook_id),
            f"{cells_prefix(incarnation)}{ref.cell_id}#{ref.write_id}#{part}",
        )
        for part in range(ref.parts)
    ]


def listing_sort_key(create_time: datetime, notebook_id: str) -> str:
    """The GSI range key: fixed-width UTC time, then the id to break ties."""
    # Fixed width (always microseconds, four-digit year), so that string
    # order is time order.
    moment = create_time.astimezone(UTC).isoformat(timespec="microseconds")
    return f"{moment}#{notebook_id}"


def listing_start_key(owner: str, create_time: datetime, notebook_id: str) -> Item:
    """The ExclusiveStartKey of the page after (create_time, notebook_id)."""
    return {
        **key_item(meta_key(notebook_id)),
        "owner": {"S": owner},
        "listing": {"S": listing_sort_key(create_time, notebook_id)},
    }


# --- meta items


def meta_item(
    notebook: Notebook, incarnation: str, commit: str, refs: Sequence[CellRef]
) -> Item:
    """The meta item of a notebook whose cells are at refs."""
    pk, sk = meta_key(notebook.id)
    return {
        "PK": {"S": pk},
        "SK": {"S": sk},
        "format": {"N": str(FORMAT)},
        "id": {"S": notebook.id},
        "owner": {"S": notebook.owner},
        "listing": {"S": listing_sort_key(notebook.create_time, notebook.id)},
        "name": {"S": notebook.name},
        "revision": {"N": str(notebook.revision)},
        "create_time": {"S": time_to_text(notebook.create_time)},
        "update_time": {"S": time_to_text(notebook.update_time)},
        "database_url": {"S": notebook.database_url},
        "run_mode": {"S": notebook.run_mode.value},
        "cell_count": {"N": str(len(refs))},
        "cells": {
            "L": [
                {
                    "L": [
                        {"S": ref.cell_id},
                        {"S": ref.write_id},
                        {"N": str(ref.parts)},
                    ]
                }
                for ref in refs
            ]
        },
        "incarnation": {"S": incarnation},
        "commit": {"S": commit},
    }


def meta_from_item(item: Mapping[str, Any]) -> Meta:
    """Decode a meta item; DocumentError if it is not one meta_item wrote."""
    if _number(item, "format") != FORMAT:
        raise DocumentError(f"format is not {FORMAT}")
    refs = tuple(_ref(entry) for entry in _list(item, "cells"))
    if len({ref.cell_id for ref in refs}) != len(refs):
        raise DocumentError("the cell list names a cell twice")
    summary = summary_from_item(item)
    notebook = Notebook(
        id=summary.id,
        owner=summary.owner,
        name=summary.name,
        revision=summary.revision,
        create_time=summary.create_time,
        update_time=summary.update_time,
        database_url=summary.database_url,
        run_mode=summary.run_mode,
    )
    return Meta(notebook, _text(item, "incarnation"), _text(item, "commit"), refs)


def summary_from_item(item: Mapping[str, Any]) -> NotebookSummary:
    """A listing entry from a meta item or its GSI projection."""
    return NotebookSummary(
        id=NotebookId(_text(item, "id")),
        owner=_text(item, "owner"),
        name=_text(item, "name"),
        revision=_number(item, "revision"),
        create_time=time_from_text(_text(item, "create_time")),
        update_time=time_from_text(_text(item, "update_time")),
        database_url=_text(item, "database_url"),
        cell_count=_number(item, "cell_count"),
        run_mode=run_mode_from(item.get("run_mode", {}).get("S")),
    )


# --- cell items


def encode_cell(cell: Cell) -> list[bytes]:
    """A cell's content as the bodies of its part items (at least one)."""
    text = json.dumps(cell_to_document(cell), ensure_ascii=False)
    # Outputs are mostly text, JSON and base64: zlib typically halves them or
    # better, which halves the items (and write units) a large output costs.
    data = zlib.compress(text.encode("utf-8"), 6)
    return [data[at : at + PART_BYTES] for at in range(0, len(data), PART_BYTES)]


def part_item(key: Key, body: bytes) -> Item:
    """The item holding one part of a cell."""
    return {**key_item(key), "body": {"B": body}}


def decode_cell(cell_id: CellId, bodies: Iterable[bytes]) -> Cell:
    """The cell whose parts are bodies; DocumentError if they do not decode."""
    try:
        text = zlib.decompress(b"".join(bodies)).decode("utf-8")
        cell = cell_from_document(json.loads(text), f"cell {cell_id!r}")
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DocumentError(f"cell {cell_id!r}: {error}") from None
    if cell.id != cell_id:
        raise DocumentError(f"cell {cell_id!r} holds cell {cell.id!r}")
    return cell


def body_of(item: Mapping[str, Any]) -> bytes:
    """The part body of a cell item."""
    value = item.get("body", {}).get("B")
    if not isinstance(value, bytes):
        raise DocumentError("a cell item has no binary body")
    return value


# --- sizes


def item_size(item: Mapping[str, Any]) -> int:
    """DynamoDB's size of an item (names plus values), close enough to
    compare with its 400 KB limit before a write fails on it."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: Mapping[str, Any]) -> int:
    (kind, content), *_ = value.items()
    if kind == "S":
        return len(str(content).encode("utf-8", "surrogatepass"))
    if kind == "B":
        return len(content)
    if kind == "N":
        # About one byte per two digits, plus one.
        return len(str(content)) // 2 + 2
    if kind == "L":
        return 3 + sum(1 + _value_size(element) for element in content)
    if kind == "M":
        return 3 + sum(
            1 + len(name.encode()) + _value_size(element)
            for name, element in content.items()
        )
    return 1  # BOOL, NULL


# --- decoding helpers (trust nothing, like documents.py)


def _ref(entry: object) -> CellRef:
    fields = entry.get("L") if isinstance(entry, dict) else None
    if not isinstance(fields, list) or len(fields) != 3:
        raise DocumentError("a cell list entry is not [id, write id, parts]")
    cell_id, write_id, parts = (
        field.get(kind) if isinstance(field, dict) else None
        for field, kind in zip(fields, ("S", "S", "N"), strict=True)
    )
    if not isinstance(cell_id, str) or not isinstance(write_id, str):
        raise DocumentError("a cell list entry has a non-string id")
    if not isinstance(parts, str) or not parts.isdigit() or int(parts) < 1:
        raise DocumentError(f"cell {cell_id!r} has no valid part count")
    return CellRef(CellId(cell_id), write_id, int(parts))


def _text(item: Mapping[str, Any], name: str) -> str:
    value = item.get(name)
    text = value.get("S") if isinstance(value, dict) else None
    if not isinstance(text, str):
        raise DocumentError(f"attribute {name!r} is not a string")
    return text


def _number(item: Mapping[str, Any], name: str) -> int:
    value = item.get(name)
    number = value.get("N") if isinstance(value, dict) else None
    if not isinstance(number, str) or not number.lstrip("-").isdigit():
        raise DocumentError(f"attribute {name!r} is not an integer")
    return int(number)


def _list(item: Mapping[str, Any], name: str) -> list[Any]:
    value = item.get(name)
    elements = value.get("L") if isinstance(value, dict) else None
    if not isinstance(elements, list):
        raise DocumentError(f"attribute {name!r} is not a list")
    return elements
