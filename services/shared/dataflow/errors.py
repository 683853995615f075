"""Why a cell of the dependency graph cannot run.

These are values, not exceptions: `DependencyGraph.errors()` reports the
state of each cell, and a cell keeps its error until an edit resolves it.
Every error carries a human-readable `message`, which is what a client shows
next to the cell; it names other cells the way the user sees them (`cell 3`,
their position in the notebook), since ids mean nothing on screen. The other
fields let code act on the error (link to the other definers, draw a cycle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from services.shared.dataflow.ids import CellId

    Label = Callable[[CellId], str]


@dataclass(frozen=True)
class GraphError:
    """Base of everything that keeps a cell from running."""

    message: str


@dataclass(frozen=True)
class CellAnalysisError(GraphError):
    """The cell's code could not be analysed (syntax error, `import *`, ...)."""


@dataclass(frozen=True)
class Contest:
    """A name the cell writes, and the other cells that write it too."""

    name: str
    cells: tuple[CellId, ...]


@dataclass(frozen=True)
class MultipleDefinitionError(GraphError):
    """Names the cell writes that other cells write too: every one of them."""

    contested: tuple[Contest, ...]

    @classmethod
    def of(cls, contested: Sequence[Contest], label: Label) -> MultipleDefinitionError:
        """The error for these contests, its message naming cells by `label`."""
        parts = [
            f"'{contest.name}' is also defined by {_cells(contest.cells, label)}"
            for contest in contested
        ]
        return cls(message="; ".join(parts), contested=tuple(contested))

    @property
    def names(self) -> tuple[str, ...]:
        """The contested names, sorted."""
        return tuple(contest.name for contest in self.contested)

    @property
    def cells(self) -> tuple[CellId, ...]:
        """Every other cell involved, in the order they are first named."""
        return tuple(
            dict.fromkeys(c for contest in self.contested for c in contest.cells)
        )


@dataclass(frozen=True)
class CycleError(GraphError):
    """The cell is on a dependency cycle made of `cells` (notebook order)."""

    cells: tuple[CellId, ...]

    @classmethod
    def of(cls, cells: Sequence[CellId], label: Label) -> CycleError:
        """The error for a cycle of `cells`, its message naming them by `label`."""
        members = _listed([label(cell) for cell in cells])
        return cls(message=f"{members} form a dependency cycle", cells=tuple(cells))


def _cells(cells: Sequence[CellId], label: Label) -> str:
    return _listed([label(cell) for cell in cells])


def _listed(labels: list[str]) -> str:
    """`cell 1`, `cells 1 and 2`, `cells 1, 2 and 3`."""
    numbers = [text.removeprefix("cell ") for text in labels]
    if len(numbers) == 1:
        return labels[0]
    return f"cells {', '.join(numbers[:-1])} and {numbers[-1]}"
