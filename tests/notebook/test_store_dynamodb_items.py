"""The DynamoDB item layout and write plans, without DynamoDB."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta

import pytest

from services.notebook.errors import NotebookTooLarge
from services.notebook.models import Cell, CellId, CellType
from services.notebook.store.documents import DocumentError
from services.notebook.store.dynamodb.items import (
    MAX_ITEM_BYTES,
    PART_BYTES,
    decode_cell,
    encode_cell,
    item_size,
    listing_sort_key,
    meta_from_item,
)
from services.notebook.store.dynamodb.writes import plan_write
from tests.notebook.samples import make_notebook

MOMENT = datetime(2025, 1, 1, 9, 30, tzinfo=UTC)


def cell(cell_id: str, code: str = "x = 1") -> Cell:
    return Cell(id=CellId(cell_id), type=CellType.PYTHON, code=code)


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ((MOMENT, "b"), (MOMENT + timedelta(microseconds=1), "a")),
        ((MOMENT, "a"), (MOMENT, "b")),
        ((MOMENT.replace(year=999), "z"), (MOMENT, "a")),
        ((MOMENT + timedelta(hours=1), "a"), (MOMENT + timedelta(hours=10), "a")),
    ],
    ids=["by time", "ties by id", "short years", "hours"],
)
def test_listing_keys_sort_as_time_then_id(
    earlier: tuple[datetime, str], later: tuple[datetime, str]
) -> None:
    assert listing_sort_key(*earlier) < listing_sort_key(*later)


def test_a_cell_round_trips_through_its_parts() -> None:
    output = random.Random(1).randbytes(900_000).hex()
    big = dataclasses.replace(cell("big"), result={"outputs": [{"text": output}]})

    parts = encode_cell(big)

    assert len(parts) > 1
    assert all(len(part) <= PART_BYTES for part in parts)
    assert decode_cell(big.id, parts) == big


def test_parts_of_another_cell_do_not_decode() -> None:
    with pytest.raises(DocumentError, match="holds cell"):
        decode_cell(CellId("a"), encode_cell(cell("b")))


def test_damaged_parts_do_not_decode() -> None:
    with pytest.raises(DocumentError):
        decode_cell(CellId("a"), [b"not zlib"])


def test_a_plan_rewrites_only_changed_cells_and_drops_what_they_replace() -> None:
    stored = make_notebook("nb", cells=(cell("a"), cell("b"), cell("c")))
    first = plan_write(stored, "inc", "w1", {}, {})
    refs = {ref.cell_id: ref for ref in first.refs}
    edited = dataclasses.replace(
        stored, cells=(cell("a"), cell("b", "y = 2")), revision=2
    )

    plan = plan_write(edited, "inc", "w2", {c.id: c for c in stored.cells}, refs)

    assert [ref.write_id for ref in plan.refs] == ["w1", "w2"]
    assert len(plan.parts) == 1
    assert {key[1].split("#")[2] for key in plan.obsolete} == {"b", "c"}
    assert meta_from_item(plan.meta).refs == plan.refs
    assert item_size(plan.meta) < MAX_ITEM_BYTES


def test_a_plan_with_too_many_cells_for_the_meta_item_is_refused() -> None:
    notebook = make_notebook(
        "nb", cells=tuple(cell(f"cell{i:08d}") for i in range(11_000))
    )

    with pytest.raises(NotebookTooLarge, match="11000 cells"):
        plan_write(notebook, "i" * 16, "w" * 16, {}, {})  # ids as long as real ones
