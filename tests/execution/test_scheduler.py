"""plan_run: which cells a run executes, in order (table-driven)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from services.execution.scheduler import blocked_by, plan_run
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
