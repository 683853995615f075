"""Which cells a run executes, and in what order: a pure function.

Running cells runs them and everything downstream of them, each exactly once,
parents before children, notebook order breaking ties (marimo's rule). The
additions, each marimo's too:

* Ancestors of the requested cells that have not run in the current kernel
  (a fresh kernel, or one restarted since) run first, so "run this cell" on a
  new kernel does not fail with NameError for what an upstream cell defines.
  An ancestor with an analysis error is not added: it could not run anyway,
  and a reader of a contested name still reads the value its holder has.
* Cells that cannot run (syntax error, a name defined twice, a cycle) are
  listed apart in `skipped`; the run loop reports them as errors, deletes
  what they defined, and blocks what depends on them.
* A disabled cell and every cell downstream of it are listed in `disabled`,
  each with the disabled cell that stops it: they are reported, not run.
* An import-only cell that ran before re-runs only the readers of the names
  it newly imports (`quiet`): re-running `import numpy as np` unchanged does
  not re-run every cell that uses `np`.
* In lazy mode (`lazy=True`) the run does not go downstream: it runs the
  requested cells and those of their ancestors that are stale or never ran,
  and lists the descendants in `mark_stale` instead.

No process, asyncio or protobuf here; the run loop in `runner.py` feeds the
plan to a kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping

    from services.shared.dataflow import CellId, DependencyGraph, GraphError


@dataclass(frozen=True)
class Plan:
    """The cells of one run."""

    # Everything the run covers, in execution order (skipped and disabled
    # cells included, where they would have run, so blocking follows order).
    order: tuple[CellId, ...]
    # The cells in `order` that cannot run, with the reason.
    skipped: Mapping[CellId, GraphError] = field(default_factory=dict)
    # The cells in `order` kept from running by a disabled cell: that cell
    # (the cell itself when it is the disabled one).
    disabled: Mapping[CellId, CellId] = field(default_factory=dict)
    # Lazy mode: descendants that are now out of date but do not run.
    mark_stale: tuple[CellId, ...] = ()


@dataclass(frozen=True)
class Request:
    """What a run is asked to do, and what the kernel holds already."""

    cells: Collection[CellId]
    # Cells that have run in the current kernel.
    ran: Collection[CellId] = ()
    # Cells that can run at all (not Markdown); None means every cell.
    runnable: Collection[CellId] | None = None
    # Cells the user disabled.
    disabled: Collection[CellId] = ()
    # Import-only cells that ran before, with the names they newly import.
    quiet: Mapping[CellId, frozenset[str]] = field(default_factory=dict)
    # Lazy mode: plan no descendants, mark them stale.
    lazy: bool = False
    # Lazy mode: cells that are out of date (edited, or marked stale).
    stale: Collection[CellId] = ()


def plan_run(
    graph: DependencyGraph,
    requested: Iterable[CellId],
    errors: Mapping[CellId, GraphError],
    ran: Collection[CellId] = (),
    runnable: Collection[CellId] | None = None,
) -> Plan:
    """Plan running `requested` and their descendants (automatic mode)."""
    return plan(
        graph, Request(cells=set(requested), ran=ran, runnable=runnable), errors
    )


def plan(
    graph: DependencyGraph, request: Request, errors: Mapping[CellId, GraphError]
) -> Plan:
    """The plan of a run: see the module docstring for the rules."""
    requested = {cell for cell in request.cells if cell in graph}
    downstream = _downstream(graph, requested, request.quiet)
    if request.lazy:
        cells = set(requested)
        outdated = set(request.stale)
        missing = {
            cell
            for cell in graph.ancestors(requested)
            if (cell not in request.ran or cell in outdated) and cell not in errors
        }
    else:
        cells = requested | downstream
        missing = {
            cell
            for cell in graph.ancestors(cells)
            if cell not in request.ran and cell not in errors
        }
    cells |= missing
    if request.runnable is not None:
        cells &= set(request.runnable)
    order = tuple(graph.topological_order(cells))
    stopped = _disabled_by(graph, request.disabled)
    mark_stale: tuple[CellId, ...] = ()
    if request.lazy:
        below = graph.descendants(cells) - cells
        if request.runnable is not None:
            below &= set(request.runnable)
        mark_stale = tuple(cell for cell in graph.order if cell in below)
    return Plan(
        order=order,
        skipped={cell: errors[cell] for cell in order if cell in errors},
        disabled={cell: stopped[cell] for cell in order if cell in stopped},
        mark_stale=mark_stale,
    )


def _downstream(
    graph: DependencyGraph,
    requested: set[CellId],
    quiet: Mapping[CellId, frozenset[str]],
) -> set[CellId]:
    """What running `requested` reaches, an import-only cell only through
    the names it newly imports."""
    starts = requested - quiet.keys()
    found = graph.descendants(starts) if starts else set()
    for cell, names in quiet.items():
        if cell in requested and names:
            readers = graph.readers(names) - {cell}
            found |= readers | graph.descendants(readers)
    return found


def _disabled_by(
    graph: DependencyGraph, disabled: Collection[CellId]
) -> dict[CellId, CellId]:
    """Each disabled cell and its descendants, mapped to the topmost disabled
    cell that stops it."""
    stopped: dict[CellId, CellId] = {}
    for cell in graph.in_order(cell for cell in disabled if cell in graph):
        if cell not in stopped:
            stopped[cell] = cell
            for below in graph.descendants({cell}):
                stopped.setdefault(below, cell)
    return stopped


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
