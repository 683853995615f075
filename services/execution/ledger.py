"""What the kernel holds: per cell, the names its last run bound, and why
cells are out of date or waiting.

The kernel itself knows nothing of cells (`kernel/worker.py`); the service
keeps this record so that it can delete what a cell defined before the cell
runs again, when it is deleted, blocked or skipped, and so that it can tell:

* which cells have run in this kernel (`has_run`): their ancestors need not
  run first;
* which are out of date (`is_stale`): edited since they ran, or marked stale
  by a lazy run;
* which are *held*: a run wanted them but they could not run because of an
  analysis error (theirs or upstream) or a disabled cell. When the notebook
  changes so that a held cell could run (the conflict was resolved, the cell
  enabled) and its code is still what it was, it runs again unasked
  (`released`), as marimo re-runs cells blocked by a resolved conflict.

A fresh kernel starts with an empty ledger (`clear`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from services.shared.dataflow import CellId


@dataclass(frozen=True)
class Entry:
    """One cell's last run in the kernel."""

    names: frozenset[str]
    code: str
    succeeded: bool = False


class KernelLedger:
    """The record of one kernel's cells."""

    def __init__(self) -> None:
        self._ran: dict[CellId, Entry] = {}
        self._stale: set[CellId] = set()
        self._held: dict[CellId, str] = {}

    def clear(self) -> None:
        """Forget everything: the kernel is new."""
        self._ran.clear()
        self._stale.clear()
        self._held.clear()

    # -- runs ----------------------------------------------------------------

    @property
    def ran(self) -> Mapping[CellId, Entry]:
        """Every cell that has run in this kernel (read-only view)."""
        return self._ran

    def has_run(self, cell_id: CellId) -> bool:
        return cell_id in self._ran

    def starting(self, cell_id: CellId, names: frozenset[str], code: str) -> None:
        """A cell is about to run. Recorded before it runs: a cell that fails
        half-way may still have bound some of its names."""
        self._ran[cell_id] = Entry(names, code)
        self._stale.discard(cell_id)
        self._held.pop(cell_id, None)

    def finished(self, cell_id: CellId, succeeded: bool) -> None:
        entry = self._ran.get(cell_id)
        if entry is not None:
            self._ran[cell_id] = Entry(entry.names, entry.code, succeeded)

    def forget(self, cell_ids: Iterable[CellId]) -> list[str]:
        """Drop cells from the record; the names they bound, to delete."""
        names: set[str] = set()
        for cell_id in cell_ids:
            entry = self._ran.pop(cell_id, None)
            if entry is not None:
                names |= entry.names
            self._stale.discard(cell_id)
        return sorted(names)

    # -- staleness -----------------------------------------------------------

    def is_stale(self, cell_id: CellId, code: str) -> bool:
        """Never run here, edited since, or marked stale by a lazy run."""
        entry = self._ran.get(cell_id)
        return entry is None or entry.code != code or cell_id in self._stale

    def edited(self, cell_id: CellId, code: str) -> bool:
        """Ran here, and its code has changed since."""
        entry = self._ran.get(cell_id)
        return entry is not None and entry.code != code

    def mark_stale(self, cell_id: CellId) -> None:
        self._stale.add(cell_id)

    @property
    def stale(self) -> frozenset[CellId]:
        """Cells marked stale by lazy runs."""
        return frozenset(self._stale)

    # -- held cells ----------------------------------------------------------

    def hold(self, cell_id: CellId, code: str) -> None:
        """A run wanted this cell but something kept it from running."""
        self._held[cell_id] = code

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def held(self) -> Mapping[CellId, str]:
        return dict(self._held)

    def release(self, cell_id: CellId) -> None:
        self._held.pop(cell_id, None)
