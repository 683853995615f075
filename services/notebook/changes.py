"""What the notebook service tells watchers: snapshots and change events."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from services.notebook.graphs import CellView
    from services.notebook.models import CellId, Notebook, NotebookSummary


class ChangeKind(enum.Enum):
    """What a change event is about."""

    CELL_CREATED = "cell_created"
    CELL_UPDATED = "cell_updated"
    CELL_MOVED = "cell_moved"
    CELL_DELETED = "cell_deleted"
    NOTEBOOK_CHANGED = "notebook_changed"
    RESULT_RECORDED = "result_recorded"
    NOTEBOOK_DELETED = "notebook_deleted"


@dataclass(frozen=True)
class Change:
    """One change of a notebook, as published to its watchers."""

    kind: ChangeKind
    revision: int
    notebook: NotebookSummary
    cell: CellView | None = None
    cell_id: CellId | None = None
    index: int | None = None


@dataclass(frozen=True)
class Snapshot:
    """The whole notebook at one revision, with every cell's analysis."""

    notebook: Notebook
    cells: tuple[CellView, ...]

    @property
    def revision(self) -> int:
        return self.notebook.revision


class ChangeSink(Protocol):
    """Where a notebook's changes go besides this process's own watchers
    (the change stream shared by replicas, ``feed.py``)."""

    async def publish(self, changes: Sequence[Change]) -> None:
        """Take the changes of one stored write; never raise."""
        ...
