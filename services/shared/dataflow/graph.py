"""The dependency graph of one notebook's cells.

There is an edge A → B when cell B reads a name cell A writes (a builtin B
uses counts as a read once some cell rebinds it), and an edge R → D when
cell D deletes (`del x`) a name that cell R reads: the deletion must come
after every use. So two cells deleting one name form a cycle, as does a cell
that deletes `x` and defines something a reader of `x` needs. A cell never
depends on itself. Every writer of a name gets the edges, even when two
cells write the same name; that name is then an error on each of them.

The graph is kept incrementally, because it is updated on every keystroke
that reaches the server: three indexes (name → writers, readers, deleters) let
`set_cell` recompute only the edges next to the edited cell, in time
proportional to its degree, and skip even that when its names did not
change. Notebook positions are kept in a dict updated on insert, move and
remove (O(cells) then, O(1) on edit). Cycles are found lazily, only in the
region an edit can affect (see `cycles.py`).

Running cell X means running `topological_order({X} | descendants({X}))`.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING

from services.shared.dataflow.analysis import CellAnalysis
from services.shared.dataflow.cycles import CycleTracker
from services.shared.dataflow.errors import (
    CellAnalysisError,
    Contest,
    CycleError,
    GraphError,
    MultipleDefinitionError,
)
from services.shared.dataflow.ordering import topological_order
from services.shared.dataflow.traversal import (
    reachable,
    reachable_within_budget,
    reached_below,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from services.shared.dataflow.ids import CellId

_EMPTY = CellAnalysis()


class DependencyGraph:
    """Cells in notebook order, the edges between them, and their errors."""

    def __init__(self) -> None:
        self._order: list[CellId] = []
        self._position: dict[CellId, int] = {}
        self._analyses: dict[CellId, CellAnalysis] = {}
        # What each cell links to as a reader: reads and builtin reads.
        self._needs: dict[CellId, frozenset[str]] = {}
        self._writers: dict[str, set[CellId]] = {}
        self._readers: dict[str, set[CellId]] = {}
        self._deleters: dict[str, set[CellId]] = {}
        self._parents: dict[CellId, set[CellId]] = {}
        self._children: dict[CellId, set[CellId]] = {}
        self._contested: set[str] = set()  # names with two or more writers
        # Edges from a cell to one above it. Without them, notebook order is
        # a topological order, so most plans need no sorting by dependency.
        self._upward: set[tuple[CellId, CellId]] = set()
        self._failed: set[CellId] = set()  # cells whose analysis failed
        self._cycles = CycleTracker()

    # -- cells -------------------------------------------------------------

    def __contains__(self, cell_id: object) -> bool:
        return cell_id in self._analyses

    def __len__(self) -> int:
        return len(self._order)

    @property
    def order(self) -> list[CellId]:
        """The cells in notebook order (a copy)."""
        return list(self._order)

    def analysis(self, cell_id: CellId) -> CellAnalysis:
        """The analysis last given for `cell_id`."""
        return self._analyses[cell_id]

    def set_cell(
        self, cell_id: CellId, analysis: CellAnalysis, index: int | None = None
    ) -> None:
        """Add a cell (at `index`, default last) or replace its analysis.

        For an existing cell, a given `index` also moves it there.
        """
        if cell_id not in self._analyses:
            self._insert(cell_id, len(self._order) if index is None else index)
        elif index is not None:
            self.move_cell(cell_id, index)
        self._replace(cell_id, analysis)

    def remove_cell(self, cell_id: CellId) -> None:
        """Remove a cell and its edges; raise KeyError if it is unknown."""
        self._replace(cell_id, _EMPTY)
        self._cycles.forget(cell_id)
        for table in (self._analyses, self._needs, self._parents, self._children):
            del table[cell_id]
        position = self._position.pop(cell_id)
        del self._order[position]
        self._renumber(position, len(self._order))

    def move_cell(self, cell_id: CellId, index: int) -> None:
        """Move a cell to `index` in notebook order (its index afterwards)."""
        if not 0 <= index < len(self._order):
            raise IndexError(f"index {index} is outside 0..{len(self._order) - 1}")
        old = self._position[cell_id]
        del self._order[old]
        self._order.insert(index, cell_id)
        self._renumber(min(old, index), max(old, index) + 1)
        # Only the moved cell changed places relative to the others.
        self._recheck_direction(cell_id)

    # -- queries -----------------------------------------------------------

    def parents(self, cell_id: CellId) -> frozenset[CellId]:
        """The cells that write a name `cell_id` reads."""
        return frozenset(self._parents[cell_id])

    def children(self, cell_id: CellId) -> frozenset[CellId]:
        """The cells that read a name `cell_id` writes, or delete one it reads."""
        return frozenset(self._children[cell_id])

    def readers(self, names: Iterable[str]) -> set[CellId]:
        """The cells that read (or delete) any of `names`."""
        found: set[CellId] = set()
        for name in names:
            found |= self._readers.get(name, set())
            found |= self._deleters.get(name, set())
        return found

    def position(self, cell_id: CellId) -> int:
        """The cell's index in notebook order."""
        return self._position[cell_id]

    def in_order(self, cell_ids: Iterable[CellId]) -> tuple[CellId, ...]:
        """`cell_ids` sorted in notebook order."""
        return self._in_order(cell_ids)

    def label(self, cell_id: CellId) -> str:
        """How a user names the cell: its position, counted from 1."""
        return f"cell {self._position[cell_id] + 1}"

    def descendants(self, cell_ids: Iterable[CellId]) -> set[CellId]:
        """Cells reachable from `cell_ids` by one or more edges."""
        starts = set(cell_ids)
        children = self._children
        first = _neighbours(starts, children)
        if self._upward or not starts:
            return reachable(first, children)
        # Walk while few cells are reached; once the walk turns out large,
        # one pass over the cells below is cheaper (see `traversal.py`). A
        # small budget bounds what the abandoned walk wastes.
        below = len(self._order) - min(self._position[cell] for cell in starts)
        found = reachable_within_budget(first, children, budget=below // 16)
        if found is not None:
            return found
        return reached_below(starts, self._order, self._position, self._parents)

    def ancestors(self, cell_ids: Iterable[CellId]) -> set[CellId]:
        """Cells from which `cell_ids` are reachable by one or more edges."""
        parents = self._parents
        return reachable(_neighbours(cell_ids, parents), parents)

    def topological_order(self, cell_ids: Iterable[CellId]) -> list[CellId]:
        """`cell_ids` parents first, ties in notebook order.

        Only edges between the given cells count: pass a set closed under
        descendants (a run plan is) for indirect dependencies to be honoured.
        Cells on a cycle come out together, in notebook order, where the
        cycle as a whole belongs (see `ordering.py`).
        """
        # A set is used as given: plans are large and copying them shows.
        cells = cell_ids if isinstance(cell_ids, AbstractSet) else set(cell_ids)
        if not cells <= self._analyses.keys():
            raise KeyError(f"unknown cells: {sorted(cells - self._analyses.keys())}")
        ordered = self._in_notebook_order(cells)
        if ordered is not None:
            return ordered
        return topological_order(cells, self._children, self._position, self._order)

    # -- errors ------------------------------------------------------------

    def errors(self) -> dict[CellId, GraphError]:
        """The first error of every cell that cannot run, in notebook order.

        A cell with several errors reports the most basic one: its analysis
        error, then its multiple definitions (all its contested names), then
        a cycle. `cell_errors` lists them all.
        """
        cycles = self._current_cycles()
        troubled = set(self._failed) | cycles.keys()
        for name in self._contested:
            troubled |= self._writers[name]
        found = {cell: self._cell_errors(cell, cycles)[0] for cell in troubled}
        return dict(sorted(found.items(), key=lambda item: self._position[item[0]]))

    def cell_errors(self, cell_id: CellId) -> tuple[GraphError, ...]:
        """Every error of one cell, most basic first."""
        return self._cell_errors(cell_id, self._current_cycles())

    def _cell_errors(
        self, cell_id: CellId, cycles: dict[CellId, frozenset[CellId]]
    ) -> tuple[GraphError, ...]:
        found: list[GraphError] = []
        if cell_id in self._failed:
            found.append(self._analysis_error(cell_id))
        contested = sorted(self._analyses[cell_id].writes & self._contested)
        if contested:
            contests = [
                Contest(name, self._in_order(self._writers[name] - {cell_id}))
                for name in contested
            ]
            found.append(MultipleDefinitionError.of(contests, self.label))
        members = cycles.get(cell_id)
        if members is not None:
            found.append(CycleError.of(self._in_order(members), self.label))
        return tuple(found)

    # -- internals ---------------------------------------------------------

    def _insert(self, cell_id: CellId, index: int) -> None:
        if not 0 <= index <= len(self._order):
            raise IndexError(f"index {index} is outside 0..{len(self._order)}")
        self._order.insert(index, cell_id)
        self._renumber(index, len(self._order))
        self._analyses[cell_id] = _EMPTY
        self._needs[cell_id] = frozenset()
        self._parents[cell_id] = set()
        self._children[cell_id] = set()

    def _renumber(self, start: int, stop: int) -> None:
        for position in range(start, stop):
            self._position[self._order[position]] = position

    def _replace(self, cell_id: CellId, analysis: CellAnalysis) -> None:
        old = self._analyses[cell_id]
        self._analyses[cell_id] = analysis
        if analysis.error is None:
            self._failed.discard(cell_id)
        else:
            self._failed.add(cell_id)
        needs = analysis.reads | analysis.builtin_reads
        # Edges change only when names do; an edit that keeps them (the usual
        # keystroke) costs nothing more.
        relink = False
        if needs != self._needs[cell_id]:
            _reindex(self._readers, cell_id, self._needs[cell_id], needs)
            self._needs[cell_id] = needs
            relink = True
        if analysis.deletes != old.deletes:
            _reindex(self._deleters, cell_id, old.deletes, analysis.deletes)
            relink = True
        if analysis.writes != old.writes:
            _reindex(self._writers, cell_id, old.writes, analysis.writes)
            self._recount(old.writes ^ analysis.writes)
            relink = True
        if relink:
            self._relink(cell_id)
            self._cycles.mark_changed(cell_id)

    def _relink(self, cell_id: CellId) -> None:
        """Recompute every edge of one cell, in both directions."""
        analysis = self._analyses[cell_id]
        needs = self._needs[cell_id]
        parents = _members(needs, self._writers)
        parents |= _members(analysis.deletes, self._readers)
        parents.discard(cell_id)
        children = _members(analysis.writes, self._readers)
        children |= _members(needs, self._deleters)
        children.discard(cell_id)
        old_parents, old_children = self._parents[cell_id], self._children[cell_id]
        for parent in old_parents - parents:
            self._unlink(parent, cell_id)
        for parent in parents - old_parents:
            self._link(parent, cell_id)
        for child in old_children - children:
            self._unlink(cell_id, child)
        for child in children - old_children:
            self._link(cell_id, child)

    def _link(self, parent: CellId, child: CellId) -> None:
        self._children[parent].add(child)
        self._parents[child].add(parent)
        if self._position[parent] > self._position[child]:
            self._upward.add((parent, child))

    def _unlink(self, parent: CellId, child: CellId) -> None:
        self._children[parent].discard(child)
        self._parents[child].discard(parent)
        self._upward.discard((parent, child))

    def _recheck_direction(self, cell_id: CellId) -> None:
        """Re-sort the edges of a moved cell into upward and downward."""
        position = self._position
        edges = [(parent, cell_id) for parent in self._parents[cell_id]]
        edges += [(cell_id, child) for child in self._children[cell_id]]
        for parent, child in edges:
            if position[parent] > position[child]:
                self._upward.add((parent, child))
            else:
                self._upward.discard((parent, child))

    def _in_notebook_order(self, cells: AbstractSet[CellId]) -> list[CellId] | None:
        """`cells` in notebook order, if no edge between them points upwards."""
        for parent, child in self._upward:
            if parent in cells and child in cells:
                return None
        if len(cells) * 8 < len(self._order):
            return sorted(cells, key=self._position.__getitem__)
        # For a large share of the notebook, one pass over it beats a sort.
        return [cell for cell in self._order if cell in cells]

    def _recount(self, names: AbstractSet[str]) -> None:
        for name in names:
            if len(self._writers.get(name, ())) > 1:
                self._contested.add(name)
            else:
                self._contested.discard(name)

    def _current_cycles(self) -> dict[CellId, frozenset[CellId]]:
        return dict(self._cycles.cycles(self._children, self._parents))

    def _in_order(self, cells: Iterable[CellId]) -> tuple[CellId, ...]:
        return tuple(sorted(cells, key=self._position.__getitem__))

    def _analysis_error(self, cell_id: CellId) -> CellAnalysisError:
        return CellAnalysisError(message=self._analyses[cell_id].error or "")


def _neighbours(
    cell_ids: Iterable[CellId], edges: dict[CellId, set[CellId]]
) -> set[CellId]:
    found: set[CellId] = set()
    for cell_id in cell_ids:
        found |= edges[cell_id]
    return found


def _members(names: AbstractSet[str], index: dict[str, set[CellId]]) -> set[CellId]:
    found: set[CellId] = set()
    for name in names:
        cells = index.get(name)
        if cells:
            found |= cells
    return found


def _reindex(
    index: dict[str, set[CellId]],
    cell_id: CellId,
    old: AbstractSet[str],
    new: AbstractSet[str],
) -> None:
    for name in old - new:
        cells = index[name]
        cells.discard(cell_id)
        if not cells:
            del index[name]
    for name in new - old:
        index.setdefault(name, set()).add(cell_id)
