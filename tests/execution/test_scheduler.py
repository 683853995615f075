"""plan_run: which cells a run executes, in order (table-driven)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from services.execution.scheduler import Request, blocked_by, plan, plan_run
from services.shared.dataflow import CellId, DependencyGraph, analyse_python


def graph_of(cells: dict[str, str]) -> DependencyGraph:
    graph = DependencyGraph()
    for cell_id, code in cells.items():
        graph.set_cell(CellId(cell_id), analyse_python(code))
    return graph


@dataclass(frozen=True)
class Case:
    name: str
    cells: dict[str, str]
    requested: set[str]
    expected: list[str]
    ran: set[str] = field(default_factory=set)
    skipped: set[str] = field(default_factory=set)


ALL_RAN = {"a", "b", "c", "d", "e"}

CASES = [
    Case(
        "chain",
        {"a": "x = 1", "b": "y = x", "c": "z = y"},
        {"a"},
        ["a", "b", "c"],
        ALL_RAN,
    ),
    Case(
        "sibling untouched",
        {"a": "x = 1", "b": "y = x", "c": "w = 2"},
        {"a"},
        ["a", "b"],
        ALL_RAN,
    ),
    Case(
        "middle of a chain",
        {"a": "x = 1", "b": "y = x", "c": "z = y"},
        {"b"},
        ["b", "c"],
        ALL_RAN,
    ),
    Case(
        "diamond once each",
        {"a": "x = 1", "b": "y = x", "c": "z = x", "d": "w = y + z"},
        {"a"},
        ["a", "b", "c", "d"],
        ALL_RAN,
    ),
    Case(
        "order follows dependencies, not position",
        {"a": "y = x", "b": "x = 1"},
        {"b"},
        ["b", "a"],
        ALL_RAN,
    ),
    Case(
        "two requests merge",
        {"a": "x = 1", "b": "y = 2", "c": "z = x + y"},
        {"a", "b"},
        ["a", "b", "c"],
        ALL_RAN,
    ),
    Case(
        "fresh kernel runs ancestors", {"a": "x = 1", "b": "y = x"}, {"b"}, ["a", "b"]
    ),
    Case(
        "ran ancestors are not rerun",
        {"a": "x = 1", "b": "y = x", "c": "z = y"},
        {"c"},
        ["c"],
        {"a", "b"},
    ),
    Case(
        "multiple definition is skipped",
        {"a": "x = 1", "b": "x = 2", "c": "y = x"},
        {"a"},
        ["a", "c"],
        ALL_RAN,
        {"a"},
    ),
    Case(
        "cycle is skipped",
        {"a": "x = y", "b": "y = x"},
        {"a"},
        ["a", "b"],
        ALL_RAN,
        {"a", "b"},
    ),
    Case(
        "syntax error is skipped",
        {"a": "x = (", "b": "y = 1"},
        {"a"},
        ["a"],
        ALL_RAN,
        {"a"},
    ),
    Case("unknown requested cell is ignored", {"a": "x = 1"}, {"zz"}, [], ALL_RAN),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_plan_run(case: Case) -> None:
    graph = graph_of(case.cells)

    plan = plan_run(
        graph,
        {CellId(c) for c in case.requested},
        graph.errors(),
        ran={CellId(c) for c in case.ran},
    )

    assert list(plan.order) == case.expected
    assert set(plan.skipped) == case.skipped


def test_runnable_limits_the_plan() -> None:
    graph = graph_of({"a": "x = 1", "b": "y = x"})

    plan = plan_run(graph, {CellId("a")}, {}, ran=set(), runnable={CellId("a")})

    assert list(plan.order) == ["a"]


def test_blocked_by_names_the_first_failure_on_the_path() -> None:
    graph = graph_of({"a": "x = 1 / 0", "b": "y = x", "c": "z = y"})
    failed = {CellId("a"): CellId("a"), CellId("b"): CellId("a")}

    assert blocked_by(graph, CellId("c"), failed) == "a"
    assert blocked_by(graph, CellId("a"), failed) is None


@dataclass(frozen=True)
class RequestCase:
    name: str
    cells: dict[str, str]
    request: Request
    order: list[str]
    disabled: dict[str, str] = field(default_factory=dict)
    mark_stale: list[str] = field(default_factory=list)


def ids(*names: str) -> set[CellId]:
    return {CellId(name) for name in names}


CHAIN = {"a": "x = 1", "b": "y = x", "c": "z = y"}

REQUEST_CASES = [
    RequestCase(
        "lazy runs only the cell and marks descendants stale",
        CHAIN,
        Request(cells=ids("a"), ran=ids("a", "b", "c"), lazy=True),
        ["a"],
        mark_stale=["b", "c"],
    ),
    RequestCase(
        "lazy brings stale ancestors up to date",
        CHAIN,
        Request(cells=ids("c"), ran=ids("a", "b", "c"), lazy=True, stale=ids("b")),
        ["b", "c"],
    ),
    RequestCase(
        "lazy runs ancestors that never ran",
        CHAIN,
        Request(cells=ids("c"), lazy=True),
        ["a", "b", "c"],
    ),
    RequestCase(
        "a disabled cell stops everything below it",
        {**CHAIN, "d": "w = x"},
        Request(cells=ids("a"), ran=ids("a", "b", "c", "d"), disabled=ids("b")),
        ["a", "b", "c", "d"],
        disabled={"b": "b", "c": "b"},
    ),
    RequestCase(
        "a disabled ancestor that ran still stops its descendants",
        CHAIN,
        Request(cells=ids("c"), ran=ids("a", "b", "c"), disabled=ids("a")),
        ["c"],
        disabled={"c": "a"},
    ),
    RequestCase(
        "an unchanged import cell plans no dependents",
        {"a": "import math", "b": "r = math.pi"},
        Request(cells=ids("a"), ran=ids("a", "b"), quiet={CellId("a"): frozenset()}),
        ["a"],
    ),
    RequestCase(
        "an import cell plans the readers of what it newly imports",
        {"a": "import math, os", "b": "r = math.pi", "c": "s = os.sep"},
        Request(
            cells=ids("a"),
            ran=ids("a", "b", "c"),
            quiet={CellId("a"): frozenset({"os"})},
        ),
        ["a", "c"],
    ),
    RequestCase(
        "an ancestor with an analysis error is not added",
        {"a": "x = 1", "b": "x = 2", "c": "print(x)"},
        Request(cells=ids("c"), ran=ids("a")),
        ["c"],
    ),
]


@pytest.mark.parametrize("case", REQUEST_CASES, ids=lambda c: c.name)
def test_plan(case: RequestCase) -> None:
    graph = graph_of(case.cells)

    result = plan(graph, case.request, graph.errors())

    assert list(result.order) == case.order
    assert dict(result.disabled) == case.disabled
    assert list(result.mark_stale) == case.mark_stale
