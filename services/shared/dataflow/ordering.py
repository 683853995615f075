"""Topological order of a set of cells, ties broken by notebook order.

Kahn's algorithm with a heap of notebook positions: of the cells whose
parents (within the set) have all been emitted, the one highest in the
notebook goes first. This is what a user expects to see run: independent
cells run top to bottom.

When the set contains a cycle, Kahn's algorithm stalls. The order then falls
back to the condensation: each strongly connected component is ordered as a
unit (by its topmost cell), and its members appear together in notebook
order. Every requested cell is returned exactly once either way; cells on a
cycle carry a `CycleError`, so the scheduler knows not to run them.
"""

from __future__ import annotations

from heapq import heapify, heappop, heappush
from typing import TYPE_CHECKING

from services.shared.dataflow.cycles import strongly_connected_components

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from collections.abc import Set as AbstractSet

    from services.shared.dataflow.ids import CellId
    from services.shared.dataflow.traversal import Edges


def topological_order(
    cells: AbstractSet[CellId],
    children: Edges,
    position: Mapping[CellId, int],
    order: Sequence[CellId],
) -> list[CellId]:
    """`cells` in dependency order; `order[position[cell]] == cell`."""
    indegree = dict.fromkeys(cells, 0)
    for cell in cells:
        for child in children[cell]:
            if child in indegree:
                indegree[child] += 1
    # The heap holds positions, not cells: ints compare fastest, and the
    # position is the tie-breaker anyway.
    ready = [position[cell] for cell, count in indegree.items() if count == 0]
    heapify(ready)
    result: list[CellId] = []
    while ready:
        cell = order[heappop(ready)]
        result.append(cell)
        for child in children[cell]:
            count = indegree.get(child)
            if count is not None:
                if count == 1:
                    heappush(ready, position[child])
                indegree[child] = count - 1
    if len(result) == len(cells):
        return result
    return _order_components(cells, children, position)


def _order_components(
    cells: AbstractSet[CellId], children: Edges, position: Mapping[CellId, int]
) -> list[CellId]:
    components = [
        sorted(component, key=position.__getitem__)
        for component in strongly_connected_components(cells, children)
    ]
    component_of = {
        cell: number for number, members in enumerate(components) for cell in members
    }
    indegree = [0] * len(components)
    for cell in cells:
        for child in children[cell] & cells:
            if component_of[child] != component_of[cell]:
                indegree[component_of[child]] += 1
    ready = [
        (position[members[0]], number)
        for number, members in enumerate(components)
        if indegree[number] == 0
    ]
    heapify(ready)
    result: list[CellId] = []
    while ready:
        members = components[heappop(ready)[1]]
        result.extend(members)
        for cell in members:
            for child in children[cell] & cells:
                target = component_of[child]
                if target != component_of[cell]:
                    indegree[target] -= 1
                    if indegree[target] == 0:
                        heappush(ready, (position[components[target][0]], target))
    return result
