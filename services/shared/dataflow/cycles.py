"""Strongly connected components, and the cycles they make, kept up to date.

A cycle is a strongly connected component of two or more cells (a cell that
reads a name it writes itself has no edge to itself). Recomputing every
component after every edit would cost O(cells); `CycleTracker` instead
recomputes only the region an edit can affect:

* Edges change only next to the cells whose names changed (the *changed*
  cells), so a new cycle must pass through a changed cell: it lies in the
  cells both reachable from and reaching the changed cells.
* A cycle can only break if it contained a changed cell, so the members of
  the old cycles of the changed cells are re-examined too.

Every other cycle is untouched. The union of the two sets is closed under the
new components, so Tarjan's algorithm restricted to it is exact. The work is
done lazily, when the cycles are next asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.shared.dataflow.traversal import Edges, reachable

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from collections.abc import Set as AbstractSet

    from services.shared.dataflow.ids import CellId


def strongly_connected_components(
    cells: AbstractSet[CellId], edges: Edges
) -> list[list[CellId]]:
    """Tarjan's algorithm on the subgraph induced by `cells`, without recursion.

    Components come out in reverse topological order (sinks first).
    """
    index: dict[CellId, int] = {}
    low: dict[CellId, int] = {}
    stack: list[CellId] = []
    on_stack: set[CellId] = set()
    components: list[list[CellId]] = []

    def discover(cell: CellId) -> Iterator[CellId]:
        index[cell] = low[cell] = len(index)
        stack.append(cell)
        on_stack.add(cell)
        return iter(edges[cell] & cells)

    for root in cells:
        if root in index:
            continue
        work = [(root, discover(root))]
        while work:
            cell, children = work[-1]
            for child in children:
                if child not in index:
                    work.append((child, discover(child)))
                    break
                if child in on_stack:
                    low[cell] = min(low[cell], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[cell])
                if low[cell] == index[cell]:
                    components.append(_pop_component(cell, stack, on_stack))
    return components


def _pop_component(
    root: CellId, stack: list[CellId], on_stack: set[CellId]
) -> list[CellId]:
    component: list[CellId] = []
    while True:
        member = stack.pop()
        on_stack.discard(member)
        component.append(member)
        if member == root:
            return component


class CycleTracker:
    """The cycle each cell is on, updated lazily after edits."""

    def __init__(self) -> None:
        self._cycle_of: dict[CellId, frozenset[CellId]] = {}
        self._changed: set[CellId] = set()
        self._recheck: set[CellId] = set()

    def mark_changed(self, cell: CellId) -> None:
        """Record that the edges next to `cell` changed."""
        self._changed.add(cell)
        self._recheck |= self._cycle_of.get(cell, frozenset())

    def forget(self, cell: CellId) -> None:
        """Drop a removed cell; call `mark_changed` first, while it has edges."""
        self._changed.discard(cell)
        self._recheck.discard(cell)
        self._cycle_of.pop(cell, None)

    def cycles(
        self, children: Edges, parents: Edges
    ) -> Mapping[CellId, frozenset[CellId]]:
        """Each cell on a cycle, mapped to the members of its cycle."""
        if self._changed or self._recheck:
            self._refresh(children, parents)
        return self._cycle_of

    def _refresh(self, children: Edges, parents: Edges) -> None:
        downstream = reachable(self._changed, children)
        region = reachable(self._changed, parents, within=downstream)
        # An old cycle may still list a cell removed since it was found.
        region |= self._recheck & children.keys()
        for cell in region:
            self._cycle_of.pop(cell, None)
        for component in strongly_connected_components(region, children):
            if len(component) > 1:
                members = frozenset(component)
                self._cycle_of.update(dict.fromkeys(members, members))
        self._changed.clear()
        self._recheck.clear()
