"""Which cells a run executes, and in what order: a pure function.

Running cells runs them and everything downstream of them, each exactly once,
parents before children, notebook order breaking ties (marimo's rule). Two
additions make runs work on a kernel that does not yet hold every value:

* Ancestors of the requested cells that have not run in the current kernel
  (a fresh kernel, or one restarted since) run first, so "run this cell" on a
  new kernel does not fail with NameError for what an upstream cell defines.
* Cells that cannot run (syntax error, a name defined twice, a cycle) are
  listed apart; the run loop reports them as errors and blocks what depends
  on them.

No process, asyncio or protobuf here; the run loop in `runner.py` feeds the
plan to a kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping

    from services.shared.dataflow import CellId, DependencyGraph, GraphError


@dataclass(frozen=True)
class Plan:
    """The cells of one run."""

    # Everything the run covers, in execution order (skipped cells included,
    # where they would have run, so blocking can follow the order).
    order: tuple[CellId, ...]
    # The cells in `order` that cannot run, with the reason.
    skipped: Mapping[CellId, GraphError]


def plan_run(
    graph: DependencyGraph,
    requested: Iterable[CellId],
    errors: Mapping[CellId, GraphError],
    ran: Collection[CellId] = (),
    runnable: Collection[CellId] | None = None,
) -> Plan:
    """Plan running `requested` and their descendants.

    `ran` holds the cells that have run in the current kernel; ancestors not
    among them are added. `runnable` limits the plan to cells that can run at
    all (for example, not Markdown); None means every cell.
    """
    cells = {cell for cell in requested if cell in graph}
    cells |= graph.descendants(cells)
    missing = {cell for cell in graph.ancestors(cells) if cell not in ran}
    cells |= missing
    if runnable is not None:
        cells &= set(runnable)
    order = tuple(graph.topological_order(cells))
    skipped = {cell: errors[cell] for cell in order if cell in errors}
    return Plan(order=order, skipped=skipped)


def blocked_by(
    graph: DependencyGraph, cell: CellId, failed: Mapping[CellId, CellId]
) -> CellId | None:
    """The failed upstream cell that keeps `cell` from running, if any.

    `failed` maps every cell that failed or was blocked in this run to the
    cell that failed first on its path (itself for a failure), so a chain
    a -> b -> c with `a` raising blocks `b` and `c`, both naming `a`.
    """
    for parent in sorted(graph.parents(cell)):
        origin = failed.get(parent)
        if origin is not None:
            return origin
    return None
