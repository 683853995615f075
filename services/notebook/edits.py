"""Pure edits of a notebook document: each returns the next revision.

No I/O, no locks, no protobuf: the manager loads, applies one of these under
the notebook's lock, and stores the result conditionally on the revision it
read. Every edit bumps the revision by exactly one, which is what lets a
client say "I have seen up to revision N".
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from services.notebook.errors import CellChanged, CellNotFound
from services.notebook.models import Cell, CellId, CellStatus, Notebook, RunMode
from services.shared.errors import InvalidArgument

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime


def _next(notebook: Notebook, now: datetime, **changes: Any) -> Notebook:
    return dataclasses.replace(
        notebook, revision=notebook.revision + 1, update_time=now, **changes
    )


def _position(notebook: Notebook, cell_id: CellId) -> int:
    for position, cell in enumerate(notebook.cells):
        if cell.id == cell_id:
            return position
    raise CellNotFound(notebook.id, cell_id)


def rename(notebook: Notebook, name: str, now: datetime) -> Notebook:
    """Give the notebook a new name."""
    return _next(notebook, now, name=name)


def set_database_url(notebook: Notebook, url: str, now: datetime) -> Notebook:
    """Set (or, with "", clear) the database SQL cells run against."""
    return _next(notebook, now, database_url=url)


def set_run_mode(notebook: Notebook, run_mode: RunMode, now: datetime) -> Notebook:
    """Switch the notebook between automatic and lazy runs."""
    return _next(notebook, now, run_mode=run_mode)


def set_cell_disabled(
    notebook: Notebook, cell_id: CellId, disabled: bool, now: datetime
) -> Notebook:
    """Disable or enable a cell."""
    position = _position(notebook, cell_id)
    new = dataclasses.replace(notebook.cells[position], disabled=disabled)
    cells = (*notebook.cells[:position], new, *notebook.cells[position + 1 :])
    return _next(notebook, now, cells=cells)


def add_cell(
    notebook: Notebook, cell: Cell, index: int | None, now: datetime
) -> Notebook:
    """Insert a cell at index (append when None)."""
    if notebook.cell(cell.id) is not None:
        raise InvalidArgument(
            f"cell id {cell.id!r} is already used in notebook {notebook.id!r}",
            field_violations=[("cell_id", "already used")],
        )
    count = len(notebook.cells)
    if index is None:
        index = count
    if not 0 <= index <= count:
        raise InvalidArgument(
            f"index {index} is outside 0..{count}",
            field_violations=[("index", f"must be between 0 and {count}")],
        )
    cells = (*notebook.cells[:index], cell, *notebook.cells[index:])
    return _next(notebook, now, cells=cells)


def update_cell(
    notebook: Notebook,
    cell_id: CellId,
    code: str,
    result_name: str | None,
    now: datetime,
    expected_code: str | None = None,
) -> Notebook:
    """Replace a cell's code (and result name); the cell becomes STALE.

    With ``expected_code``, refused (CellChanged) if the cell's code is no
    longer that: the caller would overwrite someone else's newer edit.
    """
    position = _position(notebook, cell_id)
    old = notebook.cells[position]
    if expected_code is not None and old.code != expected_code:
        raise CellChanged(notebook.id, cell_id)
    new = dataclasses.replace(
        old,
        code=code,
        result_name=old.result_name if result_name is None else result_name,
        status=CellStatus.STALE,
    )
    cells = (*notebook.cells[:position], new, *notebook.cells[position + 1 :])
    return _next(notebook, now, cells=cells)


def move_cell(
    notebook: Notebook, cell_id: CellId, index: int, now: datetime
) -> Notebook:
    """Move a cell to index, counted in the notebook after the move."""
    position = _position(notebook, cell_id)
    count = len(notebook.cells)
    if not 0 <= index < count:
        raise InvalidArgument(
            f"index {index} is outside 0..{count - 1}",
            field_violations=[("index", f"must be between 0 and {count - 1}")],
        )
    cells = list(notebook.cells)
    cells.insert(index, cells.pop(position))
    return _next(notebook, now, cells=tuple(cells))


def delete_cell(notebook: Notebook, cell_id: CellId, now: datetime) -> Notebook:
    """Remove a cell."""
    position = _position(notebook, cell_id)
    cells = (*notebook.cells[:position], *notebook.cells[position + 1 :])
    return _next(notebook, now, cells=cells)


def record_result(
    notebook: Notebook,
    cell_id: CellId,
    status: CellStatus,
    result: Mapping[str, Any],
    now: datetime,
) -> Notebook:
    """Store a cell's latest run result and status (CellNotFound if gone)."""
    _position(notebook, cell_id)
    return record_results(notebook, [(cell_id, status, result)], now)


def record_results(
    notebook: Notebook,
    results: Sequence[tuple[CellId, CellStatus, Mapping[str, Any]]],
    now: datetime,
) -> Notebook:
    """Store several cells' latest results in one revision; cells that are
    gone are skipped.

    A STALE "result" is a lazy run marking the cell out of date, not a run
    of it: the cell keeps its last result (its outputs are still what the
    kernel holds) and only its status changes.
    """
    cells = list(notebook.cells)
    positions = {cell.id: position for position, cell in enumerate(cells)}
    for cell_id, status, result in results:
        position = positions.get(cell_id)
        if position is None:
            continue
        old = cells[position]
        if status is CellStatus.STALE:
            cells[position] = dataclasses.replace(old, status=status)
        else:
            cells[position] = dataclasses.replace(old, status=status, result=result)
    return _next(notebook, now, cells=tuple(cells))
