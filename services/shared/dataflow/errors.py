"""Why a cell of the dependency graph cannot run.

These are values, not exceptions: `DependencyGraph.errors()` reports the
state of each cell, and a cell keeps its error until an edit resolves it.
Every error carries a human-readable `message`, which is what a client shows
next to the cell; the other fields let code act on the error (for example,
link to the other cells that define the same name).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.shared.dataflow.ids import CellId


@dataclass(frozen=True)
class GraphError:
    """Base of everything that keeps a cell from running."""

    message: str


@dataclass(frozen=True)
class CellAnalysisError(GraphError):
    """The cell's code could not be analysed (syntax error, `import *`, ...)."""


@dataclass(frozen=True)
class MultipleDefinitionError(GraphError):
    """The cell writes `name`, and so do `cells` (the other writers)."""

    message: str = field(init=False)
    name: str
    cells: tuple[CellId, ...]

    def __post_init__(self) -> None:
        others = ", ".join(self.cells)
        # The dataclass is frozen; the message is derived, so it is set once
        # here rather than asked of every caller.
        object.__setattr__(
            self, "message", f"'{self.name}' is also defined by cell(s) {others}"
        )


@dataclass(frozen=True)
class CycleError(GraphError):
    """The cell is on a dependency cycle made of `cells` (notebook order)."""

    message: str = field(init=False)
    cells: tuple[CellId, ...]

    def __post_init__(self) -> None:
        members = ", ".join(self.cells)
        object.__setattr__(self, "message", f"cells {members} form a dependency cycle")
