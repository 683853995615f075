"""Each notebook's dependency graph, kept in step with its edits.

Cells are analysed once per code change, not once per request: the graph of a
notebook is cached with the revision it reflects, and an edit updates it
incrementally (only cells whose code changed are re-analysed). When the cached
graph is not at the revision just before an edit (first use, or another
replica wrote the notebook), it is rebuilt from the document.

What a cell shows of the graph's errors (`shown_errors`) follows marimo's
rule that multiple definitions act where they are run: a cell that defines
a name and ran successfully before another cell started defining it too
*holds* the name. It keeps its value and shows no error until it is itself
run (the execution service then fails it, and the recorded ERROR ends the
hold) or edited (which makes it STALE); the newcomer shows the error at
once. Holding is read from the stored statuses, not kept apart, so it
survives a rebuilt graph and other replicas: the holder of a name is its
first writer, in notebook order, whose status is SUCCESS.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from services.notebook.models import Cell, CellStatus, CellType, Notebook, NotebookId
from services.shared.dataflow import (
    CellAnalysis,
    CellId,
    DependencyGraph,
    GraphError,
    MultipleDefinitionError,
    analyse_python,
    analyse_sql,
)

# Every cell's errors as shown: only cells with at least one are keys.
ShownErrors = dict[CellId, tuple[GraphError, ...]]

_NOTHING = CellAnalysis()


@dataclass(frozen=True)
class CellView:
    """A cell with what analysis says about it."""

    cell: Cell
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    errors: tuple[GraphError, ...] = ()
    deletes: tuple[str, ...] = ()
    parents: tuple[CellId, ...] = ()
    children: tuple[CellId, ...] = ()

    @property
    def error(self) -> GraphError | None:
        """The most basic of the cell's errors, if it has any."""
        return self.errors[0] if self.errors else None


def analyse(cell: Cell) -> CellAnalysis:
    """The names a cell reads and writes, by its type."""
    if cell.type is CellType.PYTHON:
        return analyse_python(cell.code)
    if cell.type is CellType.SQL:
        return analyse_sql(cell.code, cell.result_name)
    return _NOTHING


def _same_code(a: Cell, b: Cell) -> bool:
    return a.code == b.code and a.type is b.type and a.result_name == b.result_name


class NotebookGraphs:
    """A bounded cache of one DependencyGraph per notebook."""

    def __init__(self, capacity: int = 512) -> None:
        self._capacity = capacity
        self._graphs: OrderedDict[NotebookId, tuple[int, DependencyGraph]] = (
            OrderedDict()
        )

    def graph(self, notebook: Notebook) -> DependencyGraph:
        """The graph of this revision of the notebook."""
        cached = self._graphs.get(notebook.id)
        if cached is not None and cached[0] == notebook.revision:
            self._graphs.move_to_end(notebook.id)
            return cached[1]
        graph = DependencyGraph()
        for cell in notebook.cells:
            graph.set_cell(cell.id, analyse(cell))
        self._remember(notebook, graph)
        return graph

    def advance(self, before: Notebook, after: Notebook) -> DependencyGraph:
        """The graph of `after`, derived from that of `before` where possible."""
        cached = self._graphs.get(before.id)
        if cached is None or cached[0] != before.revision:
            return self.graph(after)
        graph = cached[1]
        old = {cell.id: cell for cell in before.cells}
        new_ids = {cell.id for cell in after.cells}
        for cell_id in old.keys() - new_ids:
            graph.remove_cell(cell_id)
        for index, cell in enumerate(after.cells):
            previous = old.get(cell.id)
            if previous is None:
                graph.set_cell(cell.id, analyse(cell), index)
            elif not _same_code(previous, cell):
                graph.set_cell(cell.id, analyse(cell))
        if graph.order != [cell.id for cell in after.cells]:
            for index, cell in enumerate(after.cells):
                graph.move_cell(cell.id, index)
        self._remember(after, graph)
        return graph

    def forget(self, notebook_id: NotebookId) -> None:
        """Drop a deleted notebook's graph."""
        self._graphs.pop(notebook_id, None)

    def _remember(self, notebook: Notebook, graph: DependencyGraph) -> None:
        self._graphs[notebook.id] = (notebook.revision, graph)
        self._graphs.move_to_end(notebook.id)
        while len(self._graphs) > self._capacity:
            self._graphs.popitem(last=False)


def shown_errors(
    notebook: Notebook,
    graph: DependencyGraph,
    errors: dict[CellId, GraphError] | None = None,
) -> ShownErrors:
    """Every error of every cell, less the multiple definitions a cell holds."""
    if errors is None:
        errors = graph.errors()
    statuses = {cell.id: cell.status for cell in notebook.cells}
    shown: ShownErrors = {}
    for cell_id in errors:
        found = graph.cell_errors(cell_id)
        if statuses.get(cell_id) is CellStatus.SUCCESS:
            found = tuple(
                error for error in found if not _holds(cell_id, error, graph, statuses)
            )
        if found:
            shown[cell_id] = found
    return shown


def _holds(
    cell_id: CellId,
    error: GraphError,
    graph: DependencyGraph,
    statuses: dict[CellId, CellStatus],
) -> bool:
    if not isinstance(error, MultipleDefinitionError):
        return False
    position = graph.position(cell_id)
    return not any(
        statuses.get(other) is CellStatus.SUCCESS and graph.position(other) < position
        for other in error.cells
    )


def cell_views(
    notebook: Notebook, graph: DependencyGraph, shown: ShownErrors | None = None
) -> tuple[CellView, ...]:
    """Every cell of the notebook with its analysis, in notebook order."""
    if shown is None:
        shown = shown_errors(notebook, graph)
    return tuple(cell_view(cell, graph, shown) for cell in notebook.cells)


def cell_view(cell: Cell, graph: DependencyGraph, shown: ShownErrors) -> CellView:
    """One cell with its analysis, its place in the graph and its errors."""
    analysis = graph.analysis(cell.id)
    return CellView(
        cell=cell,
        reads=tuple(sorted(analysis.reads)),
        writes=tuple(sorted(analysis.writes)),
        errors=shown.get(cell.id, ()),
        deletes=tuple(sorted(analysis.deletes)),
        parents=graph.in_order(graph.parents(cell.id)),
        children=graph.in_order(graph.children(cell.id)),
    )
