"""Tables of notebooks: their edges, run plans, errors, and edits."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from services.shared.dataflow import (
    CellAnalysisError,
    CellId,
    CycleError,
    DependencyGraph,
    GraphError,
    MultipleDefinitionError,
    analyse_python,
    analyse_sql,
)


def graph_of(cells: dict[str, str]) -> DependencyGraph:
    """A graph of Python cells (SQL ones when the code starts with `sql:`,
    their result unbound), in the dict's order."""
    graph = DependencyGraph()
    for cell_id, code in cells.items():
        sql = code.removeprefix("sql:")
        analysis = analyse_sql(sql, "") if sql != code else analyse_python(code)
        graph.set_cell(CellId(cell_id), analysis)
    return graph


def edges_of(graph: DependencyGraph) -> dict[str, set[str]]:
    return {cell: set(graph.children(cell)) for cell in graph.order}


def plan(graph: DependencyGraph, cell_id: str) -> list[CellId]:
    cell = CellId(cell_id)
    return graph.topological_order({cell} | graph.descendants({cell}))


@dataclass(frozen=True)
class EdgeCase:
    name: str
    cells: dict[str, str]
    children: dict[str, set[str]]


EDGE_CASES = [
    EdgeCase(
        "a deleter runs after every reader",
        {"a": "x = 1", "b": "print(x)", "c": "y = x + 1", "d": "del x"},
        {"a": {"b", "c", "d"}, "b": {"d"}, "c": {"d"}, "d": set()},
    ),
    EdgeCase(
        "a deleter above its readers still follows them",
        {"d": "del x", "a": "x = 1", "b": "print(x)"},
        {"a": {"b", "d"}, "b": {"d"}, "d": set()},
    ),
    EdgeCase(
        "binding then deleting is only a write",
        {"a": "x = 1\ndel x", "b": "print(x)"},
        {"a": {"b"}, "b": set()},
    ),
    EdgeCase(
        "augmented assignment is a write, not a read",
        {"a": "n = 1", "b": "total = 0\ntotal += n", "c": "print(total)"},
        {"a": {"b"}, "b": {"c"}, "c": set()},
    ),
    EdgeCase(
        "dunder names link cells",
        {"a": "__version__ = '1'", "b": "print(__version__)"},
        {"a": {"b"}, "b": set()},
    ),
    EdgeCase(
        "a view over a table another SQL cell created",
        {
            "a": "sql: create table t as select 1 as n",
            "b": "sql: create or replace view v as select * from t",
            "c": "sql: select * from v",
        },
        {"a": {"b"}, "b": {"c"}, "c": set()},
    ),
    EdgeCase(
        "a schema-qualified table is not the Python schema variable",
        {
            "a": "sales = 1",
            "b": "sql: create table sales.q1 (n int)",
            "c": "sql: select * from sales.q1",
        },
        {"a": set(), "b": {"c"}, "c": set()},
    ),
    EdgeCase(
        "an attached database is defined by the ATTACH",
        {"a": "sql: attach 'x.db' as db", "b": "print(db)"},
        {"a": {"b"}, "b": set()},
    ),
    EdgeCase(
        "chain",
        {"a": "x = 1", "b": "y = x", "c": "z = y"},
        {"a": {"b"}, "b": {"c"}, "c": set()},
    ),
    EdgeCase(
        "diamond",
        {"a": "x = 1", "b": "y = x", "c": "z = x", "d": "w = y + z"},
        {"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()},
    ),
    EdgeCase(
        "independent cells",
        {"a": "x = 1", "b": "y = 2"},
        {"a": set(), "b": set()},
    ),
    EdgeCase(
        "reader above writer still links",
        {"b": "y = x", "a": "x = 1"},
        {"a": {"b"}, "b": set()},
    ),
    EdgeCase(
        "private names do not link",
        {"a": "_x = 1", "b": "y = _x"},
        {"a": set(), "b": set()},
    ),
    EdgeCase(
        "mutation is a read",
        {"a": "df = load()", "b": "df['c'] = 1"},
        {"a": {"b"}, "b": set()},
    ),
    EdgeCase(
        "function body links to defining cell",
        {"a": "def f():\n    return x", "b": "x = 1", "c": "f()"},
        {"a": {"c"}, "b": {"a"}, "c": set()},
    ),
    EdgeCase(
        "builtin links only when rebound",
        {"a": "print = log", "b": "print(1)", "c": "len([])"},
        {"a": {"b"}, "b": set(), "c": set()},
    ),
    EdgeCase(
        "self reference is no edge",
        {"a": "x = 1\nx = x + 1"},
        {"a": set()},
    ),
    EdgeCase(
        "one cell writing many names",
        {"a": "x, y = 1, 2", "b": "u = x", "c": "v = y"},
        {"a": {"b", "c"}, "b": set(), "c": set()},
    ),
    EdgeCase(
        "analysis error has no edges",
        {"a": "x = 1", "b": "y = x +", "c": "z = y"},
        {"a": set(), "b": set(), "c": set()},
    ),
]


@pytest.mark.parametrize("case", EDGE_CASES, ids=lambda c: c.name)
def test_edges(case: EdgeCase) -> None:
    graph = graph_of(case.cells)

    assert edges_of(graph) == case.children


@pytest.mark.parametrize("case", EDGE_CASES, ids=lambda c: c.name)
def test_parents_mirror_children(case: EdgeCase) -> None:
    graph = graph_of(case.cells)

    parents = {cell: set(graph.parents(cell)) for cell in graph.order}

    assert parents == {
        cell: {p for p, kids in case.children.items() if cell in kids}
        for cell in case.cells
    }


@dataclass(frozen=True)
class PlanCase:
    name: str
    cells: dict[str, str]
    run: str
    expected: list[str]


PLAN_CASES = [
    PlanCase(
        "running the writer orders the deleter after the readers",
        {"d": "del x", "a": "x = 1", "b": "print(x)", "c": "y = x"},
        "a",
        ["a", "b", "c", "d"],
    ),
    PlanCase("chain", {"a": "x = 1", "b": "y = x", "c": "z = y"}, "a", ["a", "b", "c"]),
    PlanCase(
        "middle of chain", {"a": "x = 1", "b": "y = x", "c": "z = y"}, "b", ["b", "c"]
    ),
    PlanCase(
        "sibling untouched",
        {"a": "x = 1", "b": "y = x", "c": "w = 2"},
        "a",
        ["a", "b"],
    ),
    PlanCase(
        "diamond runs join once",
        {"a": "x = 1", "b": "y = x", "c": "z = x", "d": "w = y + z"},
        "a",
        ["a", "b", "c", "d"],
    ),
    PlanCase(
        "ties follow notebook order",
        {"a": "x = 1", "c": "u = x", "b": "v = x"},
        "a",
        ["a", "c", "b"],
    ),
    PlanCase(
        "parent below child still runs first",
        {"b": "y = x", "a": "x = 1"},
        "a",
        ["a", "b"],
    ),
    PlanCase(
        "ready cell higher up goes first",
        {"d": "w = z", "a": "x = 1", "b": "y = x", "c": "z = x"},
        "a",
        ["a", "b", "c", "d"],
    ),
    PlanCase("leaf runs alone", {"a": "x = 1", "b": "y = x"}, "b", ["b"]),
    PlanCase(
        "cycle members come together",
        {"a": "x = 1", "b": "y = x + z", "c": "z = y", "d": "w = z"},
        "a",
        ["a", "b", "c", "d"],
    ),
]


@pytest.mark.parametrize("case", PLAN_CASES, ids=lambda c: c.name)
def test_plan(case: PlanCase) -> None:
    graph = graph_of(case.cells)

    assert plan(graph, case.run) == case.expected


def test_topological_order_of_unrelated_cells_is_notebook_order() -> None:
    graph = graph_of({"a": "x = 1", "b": "y = 2", "c": "z = 3"})

    assert graph.topological_order({CellId("c"), CellId("a")}) == ["a", "c"]


def test_topological_order_ignores_edges_to_cells_outside_the_set() -> None:
    graph = graph_of({"a": "x = 1", "b": "y = x", "c": "z = y"})

    assert graph.topological_order({CellId("c"), CellId("a")}) == ["a", "c"]


def test_descendants_exclude_the_start_unless_on_a_cycle() -> None:
    acyclic = graph_of({"a": "x = 1", "b": "y = x"})
    cyclic = graph_of({"a": "x = y", "b": "y = x"})

    assert acyclic.descendants({CellId("a")}) == {"b"}
    assert cyclic.descendants({CellId("a")}) == {"a", "b"}


def test_ancestors() -> None:
    graph = graph_of({"a": "x = 1", "b": "y = x", "c": "z = y", "d": "w = 1"})

    assert graph.ancestors({CellId("c")}) == {"a", "b"}


def test_unknown_cell_is_a_key_error() -> None:
    graph = graph_of({"a": "x = 1"})

    with pytest.raises(KeyError):
        graph.topological_order({CellId("a"), CellId("nope")})


def describe(error: GraphError) -> tuple[str, ...]:
    """An error as comparable plain data."""
    if isinstance(error, MultipleDefinitionError):
        return ("multiple", *error.names, *error.cells)
    if isinstance(error, CycleError):
        return ("cycle", *error.cells)
    return ("analysis",)


@dataclass(frozen=True)
class ErrorCase:
    name: str
    cells: dict[str, str]
    errors: dict[str, tuple[str, ...]] = field(default_factory=dict)


ERROR_CASES = [
    ErrorCase("no errors", {"a": "x = 1", "b": "y = x"}),
    ErrorCase(
        "name defined twice",
        {"a": "x = 1", "b": "x = 2"},
        {"a": ("multiple", "x", "b"), "b": ("multiple", "x", "a")},
    ),
    ErrorCase(
        "name defined three times",
        {"a": "x = 1", "b": "x = 2", "c": "y = 0\nx = 3"},
        {
            "a": ("multiple", "x", "b", "c"),
            "b": ("multiple", "x", "a", "c"),
            "c": ("multiple", "x", "a", "b"),
        },
    ),
    ErrorCase(
        "augmented assignment in another cell",
        {"a": "x = 0", "b": "x += 1"},
        {"a": ("multiple", "x", "b"), "b": ("multiple", "x", "a")},
    ),
    ErrorCase(
        "two-cycle",
        {"a": "x = y", "b": "y = x"},
        {"a": ("cycle", "a", "b"), "b": ("cycle", "a", "b")},
    ),
    ErrorCase(
        "three-cycle leaves downstream alone",
        {"a": "x = z", "b": "y = x", "c": "z = y", "d": "w = z"},
        {
            "a": ("cycle", "a", "b", "c"),
            "b": ("cycle", "a", "b", "c"),
            "c": ("cycle", "a", "b", "c"),
        },
    ),
    ErrorCase(
        "two separate cycles",
        {"a": "x = y", "b": "y = x", "c": "u = v", "d": "v = u"},
        {
            "a": ("cycle", "a", "b"),
            "b": ("cycle", "a", "b"),
            "c": ("cycle", "c", "d"),
            "d": ("cycle", "c", "d"),
        },
    ),
    ErrorCase(
        "cycle through a function body",
        {"a": "def f():\n    return y", "b": "y = f()"},
        {"a": ("cycle", "a", "b"), "b": ("cycle", "a", "b")},
    ),
    ErrorCase("analysis error", {"a": "x = (", "b": "y = 1"}, {"a": ("analysis",)}),
    ErrorCase(
        "multiple definition wins over cycle",
        {"a": "x = y", "b": "y = x\nx = 2"},
        {"a": ("multiple", "x", "b"), "b": ("multiple", "x", "a")},
    ),
    ErrorCase("private names may repeat", {"a": "_x = 1", "b": "_x = 2"}),
    ErrorCase(
        "every contested name is listed",
        {"a": "x = 1\ny = 2", "b": "x = 3", "c": "y = 4\nx = 5"},
        {
            "a": ("multiple", "x", "y", "b", "c"),
            "b": ("multiple", "x", "a", "c"),
            "c": ("multiple", "x", "y", "a", "b"),
        },
    ),
    ErrorCase(
        "two deleters of one name are a cycle",
        {"a": "x = 1", "b": "del x", "c": "del x"},
        {"b": ("cycle", "b", "c"), "c": ("cycle", "b", "c")},
    ),
    ErrorCase(
        "deleter defining what a reader needs is a cycle",
        {"a": "x = 1", "b": "print(x, y)", "c": "del x\ny = 2"},
        {"b": ("cycle", "b", "c"), "c": ("cycle", "b", "c")},
    ),
    ErrorCase(
        "dunder names are public and can be contested",
        {"a": "__all__ = ['f']", "b": "__all__ = []"},
        {"a": ("multiple", "__all__", "b"), "b": ("multiple", "__all__", "a")},
    ),
    ErrorCase(
        "a SQL table and a Python global of one name are contested",
        {"a": "t = 1", "b": "sql: create table t as select 1"},
        {"a": ("multiple", "t", "b"), "b": ("multiple", "t", "a")},
    ),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=lambda c: c.name)
def test_errors(case: ErrorCase) -> None:
    graph = graph_of(case.cells)

    errors = {cell: describe(error) for cell, error in graph.errors().items()}

    assert errors == case.errors


def test_cell_errors_lists_every_error() -> None:
    graph = graph_of({"a": "x = y", "b": "y = x\nx = 2"})

    errors = [describe(error) for error in graph.cell_errors(CellId("b"))]

    assert errors == [("multiple", "x", "a"), ("cycle", "a", "b")]


def test_error_messages_name_cells_by_position() -> None:
    graph = graph_of(
        {"a": "x = 1\ny = 1", "b": "x = 2", "c": "u = v", "d": "v = u", "e": "y = 3"}
    )

    messages = {cell: error.message for cell, error in graph.errors().items()}

    assert messages[CellId("a")] == (
        "'x' is also defined by cell 2; 'y' is also defined by cell 5"
    )
    assert messages[CellId("c")] == "cells 3 and 4 form a dependency cycle"


def test_error_messages_follow_moves() -> None:
    graph = graph_of({"a": "x = 1", "b": "x = 2"})

    graph.move_cell(CellId("b"), 0)

    assert graph.errors()[CellId("a")].message == "'x' is also defined by cell 1"


def test_analysis_error_message_is_the_analysers() -> None:
    graph = graph_of({"a": "from os import *"})

    error = graph.errors()[CellId("a")]

    assert isinstance(error, CellAnalysisError)
    assert "import *" in error.message


def test_sql_cell_links_like_python() -> None:
    graph = graph_of({"a": "lo = 3"})
    graph.set_cell(CellId("q"), analyse_sql("select * from t where a > {lo}", "df"))
    graph.set_cell(CellId("b"), analyse_python("print(df)"))

    assert edges_of(graph) == {"a": {"q"}, "q": {"b"}, "b": set()}


# -- edits -------------------------------------------------------------------


@dataclass(frozen=True)
class EditCase:
    name: str
    cells: dict[str, str]
    edit: tuple[str, str]  # cell id, new code
    children: dict[str, set[str]]
    errors: set[str] = field(default_factory=set)


EDIT_CASES = [
    EditCase(
        "edit changes edges",
        {"a": "x = 1", "b": "y = 2", "c": "z = x"},
        ("c", "z = y"),
        {"a": set(), "b": {"c"}, "c": set()},
    ),
    EditCase(
        "edit renames a write",
        {"a": "x = 1", "b": "y = x"},
        ("a", "w = 1"),
        {"a": set(), "b": set()},
    ),
    EditCase(
        "edit keeping names keeps edges",
        {"a": "x = 1", "b": "y = x"},
        ("a", "x = 2"),
        {"a": {"b"}, "b": set()},
    ),
    EditCase(
        "edit creates a cycle",
        {"a": "x = 1", "b": "y = x"},
        ("a", "x = y"),
        {"a": {"b"}, "b": {"a"}},
        {"a", "b"},
    ),
    EditCase(
        "edit breaks a cycle",
        {"a": "x = z", "b": "y = x", "c": "z = y"},
        ("a", "x = 1"),
        {"a": {"b"}, "b": {"c"}, "c": set()},
    ),
    EditCase(
        "edit splits a cycle",
        {"a": "x = y + w", "b": "y = x", "c": "w = x + v", "d": "v = w"},
        ("a", "x = w"),
        {"a": {"b", "c"}, "b": set(), "c": {"a", "d"}, "d": {"c"}},
        {"a", "c", "d"},
    ),
    EditCase(
        "edit resolves a multiple definition",
        {"a": "x = 1", "b": "x = 2", "c": "y = x"},
        ("b", "z = 2"),
        {"a": {"c"}, "b": set(), "c": set()},
    ),
    EditCase(
        "edit introduces a multiple definition",
        {"a": "x = 1", "b": "y = x"},
        ("b", "y = x\nx = 3"),
        {"a": {"b"}, "b": set()},
        {"a", "b"},
    ),
    EditCase(
        "edit to a syntax error drops edges",
        {"a": "x = 1", "b": "y = x"},
        ("a", "x ="),
        {"a": set(), "b": set()},
        {"a"},
    ),
]


@pytest.mark.parametrize("case", EDIT_CASES, ids=lambda c: c.name)
def test_edit(case: EditCase) -> None:
    graph = graph_of(case.cells)
    graph.errors()  # settle the lazy cycle state first, as a server would
    cell_id, code = case.edit

    graph.set_cell(CellId(cell_id), analyse_python(code))

    assert edges_of(graph) == case.children
    assert set(graph.errors()) == case.errors


def test_remove_cell_drops_its_edges() -> None:
    graph = graph_of({"a": "x = 1", "b": "y = x", "c": "z = y"})

    graph.remove_cell(CellId("b"))

    assert graph.order == ["a", "c"]
    assert edges_of(graph) == {"a": set(), "c": set()}


def test_remove_cell_resolves_multiple_definition() -> None:
    graph = graph_of({"a": "x = 1", "b": "x = 2", "c": "y = x"})

    graph.remove_cell(CellId("a"))

    assert graph.errors() == {}
    assert edges_of(graph) == {"b": {"c"}, "c": set()}


def test_remove_cell_breaks_cycle() -> None:
    graph = graph_of({"a": "x = z", "b": "y = x", "c": "z = y"})
    assert set(graph.errors()) == {"a", "b", "c"}

    graph.remove_cell(CellId("c"))

    assert graph.errors() == {}


def test_remove_unknown_cell_is_a_key_error() -> None:
    graph = graph_of({"a": "x = 1"})

    with pytest.raises(KeyError):
        graph.remove_cell(CellId("nope"))


def test_move_cell_changes_order_and_ties() -> None:
    graph = graph_of({"a": "x = 1", "b": "u = x", "c": "v = x"})

    graph.move_cell(CellId("c"), 1)

    assert graph.order == ["a", "c", "b"]
    assert plan(graph, "a") == ["a", "c", "b"]


def test_move_cell_to_top_and_bottom() -> None:
    graph = graph_of({"a": "x = 1", "b": "y = 2", "c": "z = 3"})

    graph.move_cell(CellId("c"), 0)
    graph.move_cell(CellId("a"), 2)

    assert graph.order == ["c", "b", "a"]
    assert graph.topological_order({CellId("a"), CellId("b"), CellId("c")}) == [
        "c",
        "b",
        "a",
    ]


def test_move_out_of_range_is_an_index_error() -> None:
    graph = graph_of({"a": "x = 1", "b": "y = 2"})

    with pytest.raises(IndexError):
        graph.move_cell(CellId("a"), 2)


def test_set_cell_inserts_at_index() -> None:
    graph = graph_of({"a": "x = 1", "c": "z = 3"})

    graph.set_cell(CellId("b"), analyse_python("y = 2"), index=1)

    assert graph.order == ["a", "b", "c"]


def test_set_cell_with_index_moves_existing_cell() -> None:
    graph = graph_of({"a": "x = 1", "b": "y = 2", "c": "z = 3"})

    graph.set_cell(CellId("c"), analyse_python("z = 4"), index=0)

    assert graph.order == ["c", "a", "b"]
    assert graph.analysis(CellId("c")) == analyse_python("z = 4")


# -- incremental updates agree with a rebuild ---------------------------------

NAMES = ["a", "b", "c", "d", "e", "f"]


def random_code(rng: random.Random) -> str:
    writes = rng.sample(NAMES, rng.randint(0, 2))
    reads = rng.sample(NAMES, rng.randint(0, 2))
    lines = [f"{name} = {' + '.join(reads) or '0'}" for name in writes]
    if rng.random() < 0.2:
        lines.append(f"del {rng.choice(NAMES)}")
    return "\n".join(lines) or f"print({', '.join(reads)})"


def snapshot(graph: DependencyGraph) -> object:
    every = set(graph.order)
    return (
        graph.order,
        edges_of(graph),
        {cell: describe(error) for cell, error in graph.errors().items()},
        graph.topological_order(every),
    )


def rebuild(graph: DependencyGraph) -> DependencyGraph:
    fresh = DependencyGraph()
    for cell_id in graph.order:
        fresh.set_cell(cell_id, graph.analysis(cell_id))
    return fresh


def apply_random_edit(graph: DependencyGraph, rng: random.Random, step: int) -> None:
    cells = graph.order
    action = rng.random()
    if action < 0.15 and cells:
        graph.remove_cell(rng.choice(cells))
    elif action < 0.3 and len(cells) > 1:
        graph.move_cell(rng.choice(cells), rng.randrange(len(cells)))
    elif action < 0.5 or not cells:
        index = rng.randint(0, len(cells))
        graph.set_cell(CellId(f"n{step}"), analyse_python(random_code(rng)), index)
    else:
        graph.set_cell(rng.choice(cells), analyse_python(random_code(rng)))


@pytest.mark.parametrize("seed", range(20))
def test_incremental_updates_match_a_rebuild(seed: int) -> None:
    rng = random.Random(seed)
    graph = DependencyGraph()

    for step in range(60):
        apply_random_edit(graph, rng, step)
        # Ask for errors only now and then, so several edits pile up
        # between two lazy cycle refreshes.
        if step % 3 == 0:
            assert snapshot(graph) == snapshot(rebuild(graph))

    assert snapshot(graph) == snapshot(rebuild(graph))


def reach_within(
    graph: DependencyGraph, start: CellId, cells: set[CellId]
) -> set[CellId]:
    seen: set[CellId] = set()
    frontier = [start]
    while frontier:
        for child in graph.children(frontier.pop()) & cells:
            if child not in seen:
                seen.add(child)
                frontier.append(child)
    return seen


def naive_order(graph: DependencyGraph, cells: set[CellId]) -> list[CellId]:
    """Slow reference: cycles as units, then the topmost ready unit first.

    Only edges between cells of the set count, as in the graph.
    """
    reach = {cell: reach_within(graph, cell, cells) for cell in cells}
    units = {
        cell: frozenset({cell} | {o for o in reach[cell] if cell in reach[o]})
        for cell in cells
    }
    position = {cell: index for index, cell in enumerate(graph.order)}
    result: list[CellId] = []
    remaining = set(units.values())
    while remaining:
        ready = [
            unit
            for unit in remaining
            if all(
                units[p] == unit or units[p] not in remaining
                for cell in unit
                for p in graph.parents(cell) & cells
            )
        ]
        unit = min(ready, key=lambda u: min(position[c] for c in u))
        result.extend(sorted(unit, key=position.__getitem__))
        remaining.remove(unit)
    return result


@pytest.mark.parametrize("seed", range(20))
def test_topological_order_matches_a_naive_reference(seed: int) -> None:
    rng = random.Random(seed)
    graph = DependencyGraph()
    for step in range(40):
        apply_random_edit(graph, rng, step)
    subset = {cell for cell in graph.order if rng.random() < 0.7}

    assert graph.topological_order(subset) == naive_order(graph, subset)


def top_down_notebook(rng: random.Random, cells: int) -> DependencyGraph:
    """Every cell reads names of cells above it: all edges point down."""
    graph = DependencyGraph()
    for index in range(cells):
        reads = [f"v{rng.randrange(index)}" for _ in range(rng.randint(0, 2)) if index]
        code = f"v{index} = {' + '.join(reads) or '0'}"
        graph.set_cell(CellId(f"c{index}"), analyse_python(code))
    return graph


def naive_descendants(graph: DependencyGraph, starts: set[CellId]) -> set[CellId]:
    every = set(graph.order)
    return {cell for start in starts for cell in reach_within(graph, start, every)}


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("shape", ["top-down", "edited"])
def test_descendants_match_a_naive_walk(shape: str, seed: int) -> None:
    rng = random.Random(seed)
    graph = top_down_notebook(rng, 40)
    if shape == "edited":
        for step in range(30):
            apply_random_edit(graph, rng, step)
    cells = graph.order

    for size in (1, 2, 3):
        starts = set(rng.sample(cells, size))
        assert graph.descendants(starts) == naive_descendants(graph, starts)
