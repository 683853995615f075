"""The notebook service's domain model: plain frozen dataclasses, no protobuf.

A cell's run result is kept as the canonical proto-JSON of
`reflow.notebook.v1.CellResult`: this service stores and returns results but
never interprets them beyond their status, so a second model of outputs,
tables and tracebacks would only be a copy of the contract to keep in step.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NewType

from services.shared.dataflow import CellId

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

NotebookId = NewType("NotebookId", str)

__all__ = [
    "Cell",
    "CellId",
    "CellStatus",
    "CellType",
    "Notebook",
    "RunMode",
    "NotebookId",
    "NotebookSummary",
]


class CellType(enum.Enum):
    """The kind of code a cell holds."""

    PYTHON = "python"
    SQL = "sql"
    MARKDOWN = "markdown"


class CellStatus(enum.Enum):
    """Where a cell stands with respect to its code and the kernel."""

    IDLE = "idle"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    ERROR = "error"
    BLOCKED = "blocked"
    STALE = "stale"
    INTERRUPTED = "interrupted"
    DISABLED = "disabled"


class RunMode(enum.Enum):
    """How a notebook reacts when cells run (see the proto's RunMode)."""

    AUTOMATIC = "automatic"
    LAZY = "lazy"


@dataclass(frozen=True)
class Cell:
    """One cell: its code and its last recorded result."""

    id: CellId
    type: CellType
    code: str
    result_name: str = ""
    status: CellStatus = CellStatus.STALE
    # Canonical proto-JSON of reflow.notebook.v1.CellResult (see module doc).
    result: Mapping[str, Any] | None = None
    # A disabled cell and its descendants do not run.
    disabled: bool = False


@dataclass(frozen=True)
class Notebook:
    """A notebook document as stored."""

    id: NotebookId
    owner: str
    name: str
    revision: int
    create_time: datetime
    update_time: datetime
    # The full SQLAlchemy URL, password included: masked only at the edge.
    database_url: str = ""
    cells: tuple[Cell, ...] = field(default=())
    run_mode: RunMode = RunMode.AUTOMATIC

    def cell(self, cell_id: CellId) -> Cell | None:
        """Return the cell with this id, or None."""
        for cell in self.cells:
            if cell.id == cell_id:
                return cell
        return None

    def summary(self) -> NotebookSummary:
        """Return the notebook's listing entry."""
        return NotebookSummary(
            id=self.id,
            owner=self.owner,
            name=self.name,
            revision=self.revision,
            create_time=self.create_time,
            update_time=self.update_time,
            database_url=self.database_url,
            cell_count=len(self.cells),
            run_mode=self.run_mode,
        )


@dataclass(frozen=True)
class NotebookSummary:
    """A notebook without its cells, as listings show it."""

    id: NotebookId
    owner: str
    name: str
    revision: int
    create_time: datetime
    update_time: datetime
    database_url: str
    cell_count: int
    run_mode: RunMode = RunMode.AUTOMATIC
