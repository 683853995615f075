"""Walks along the edges of the graph: the inner loop of every run plan.

Finding what a run must include is a walk over the cells downstream of the
edited one, which in a large, well-connected notebook is most of it. Two
ways of doing it, both plain Python, with different costs:

* `reachable`: follow the edges, touching each reached cell and edge once.
  Cheapest when few cells are reached.
* `reached_below`: when every edge points down the notebook (the usual case:
  notebooks are written top to bottom), the cells downstream of a cell all
  lie below it, and one pass over those cells, asking of each whether any of
  its parents was reached, finds them with C-speed set operations. It costs
  the number of cells below, but roughly a third of a walk's cost per cell
  (measured: 0.13 ms against 0.30 ms for 970 of 1,000 cells).

`DependencyGraph.descendants` walks with a budget and switches to the pass
when the walk turns out to be large.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from itertools import islice

from services.shared.dataflow.ids import CellId

Edges = Mapping[CellId, AbstractSet[CellId]]


def reachable(
    starts: Iterable[CellId],
    edges: Edges,
    within: AbstractSet[CellId] | None = None,
) -> set[CellId]:
    """`starts` and every cell reachable from them along `edges`.

    With `within`, the walk never leaves that set (starts included as given).
    """
    seen = set(starts)
    frontier = list(seen)
    # Bound methods and a per-edge loop: the fastest plain-Python walk
    # measured (set differences per cell cost more than they save). Each
    # variant has its own loop to keep tests out of the innermost one.
    visit, pop, add = frontier.append, frontier.pop, seen.add
    if within is None:
        while frontier:
            for cell in edges[pop()]:
                if cell not in seen:
                    add(cell)
                    visit(cell)
    else:
        while frontier:
            for cell in edges[pop()]:
                if cell not in seen and cell in within:
                    add(cell)
                    visit(cell)
    return seen


def reachable_within_budget(
    starts: Iterable[CellId], edges: Edges, budget: int
) -> set[CellId] | None:
    """Like `reachable`, but None once more than `budget` cells are reached."""
    seen = set(starts)
    frontier = list(seen)
    limit = len(seen) + budget
    visit, pop, add = frontier.append, frontier.pop, seen.add
    while frontier:
        for cell in edges[pop()]:
            if cell not in seen:
                add(cell)
                visit(cell)
        if len(seen) > limit:
            return None
    return seen


def reached_below(
    starts: AbstractSet[CellId],
    order: Sequence[CellId],
    position: Mapping[CellId, int],
    parents: Edges,
) -> set[CellId]:
    """Cells reachable from `starts` by one or more edges, by one downward pass.

    Correct only when every edge points down the notebook.
    """
    reached = set(starts)
    add = reached.add
    first = min(position[cell] for cell in starts)
    for cell in islice(order, first + 1, None):
        if not parents[cell].isdisjoint(reached):
            add(cell)
    # A start is a descendant only if another start reaches it; its parents
    # all lie above it, so the final `reached` answers that.
    found = reached - starts
    found.update(cell for cell in starts if not parents[cell].isdisjoint(reached))
    return found
