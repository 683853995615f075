"""Issue 11's reactive rules through the public edge: REST via Envoy's
transcoder, the real services and real kernels behind it.

One case (at least) per rule; the exhaustive tables are in
tests/shared/test_dataflow_*.py, tests/execution/test_scheduler.py,
test_runner.py and test_semantics_rules.py.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

import httpx
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.stack.stack_process import RunningStack

TIMEOUT_S: Final = 60.0
Event = dict[str, Any]


@pytest.fixture
def api(stack: RunningStack) -> Iterator[httpx.Client]:
    """A REST client signed in as ada."""
    headers = {"authorization": f"Bearer {stack.token('ada')}"}
    base_url = f"{stack.base_url}/api/v1"
    with httpx.Client(base_url=base_url, headers=headers, timeout=TIMEOUT_S) as client:
        yield client


@pytest.fixture
def nb(api: httpx.Client) -> Iterator[str]:
    """A new notebook; its kernel is stopped afterwards, since the stack's
    other tests share the per-user kernel limit."""
    response = api.post("/notebooks", json={"name": "semantics"})
    response.raise_for_status()
    notebook_id: str = response.json()["notebook"]["id"]
    yield notebook_id
    api.delete(f"/notebooks/{notebook_id}/kernel")


def add(api: httpx.Client, nb: str, code: str, **fields: Any) -> dict[str, Any]:
    response = api.post(f"/notebooks/{nb}/cells", json={"code": code, **fields})
    response.raise_for_status()
    cell: dict[str, Any] = response.json()["cell"]
    return cell


def run(api: httpx.Client, nb: str, *cell_ids: str) -> list[Event]:
    with api.stream(
        "POST", f"/notebooks/{nb}:run", json={"cellIds": list(cell_ids)}
    ) as response:
        assert response.status_code == 200
        return [json.loads(line)["event"] for line in response.iter_lines() if line]


def cells(api: httpx.Client, nb: str) -> list[dict[str, Any]]:
    response = api.get(f"/notebooks/{nb}")
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()["notebook"]["cells"]
    return found


def started(events: list[Event]) -> list[str]:
    return [e["cellId"] for e in events if "cellStarted" in e]


def results(events: list[Event]) -> dict[str, dict[str, Any]]:
    return {
        e["cellId"]: e["cellFinished"]["result"] for e in events if "cellFinished" in e
    }


def printed(events: list[Event], cell_id: str) -> str:
    return "".join(
        e["streamChunk"]["text"]
        for e in events
        if e.get("cellId") == cell_id and "streamChunk" in e
    )


def test_del_runs_after_every_reader(api: httpx.Client, nb: str) -> None:
    deleter = add(api, nb, "del x")["id"]
    writer = add(api, nb, "x = 1")["id"]
    reader = add(api, nb, "print(x)")["id"]

    events = run(api, nb, writer)

    assert started(events) == [writer, reader, deleter]
    assert printed(events, reader) == "1\n"


def test_augmented_assignment_is_a_write_and_dunders_are_public(
    api: httpx.Client, nb: str
) -> None:
    add(api, nb, "x = 1")
    augmented = add(api, nb, "x += 1")
    dunder = add(api, nb, "__all__ = ['f']")

    assert augmented["writes"] == ["x"]
    assert "reads" not in augmented
    assert augmented["analysisError"]["kind"] == "KIND_MULTIPLE_DEFINITION"
    assert dunder["writes"] == ["__all__"]


def test_private_names_do_not_cross_cells(api: httpx.Client, nb: str) -> None:
    first = add(api, nb, "_tmp = 5")["id"]
    second = add(api, nb, "print(_tmp)")["id"]

    events = run(api, nb, first, second)

    assert results(events)[second]["status"] == "CELL_STATUS_ERROR"
    assert "'_tmp' is not defined" in results(events)[second]["error"]["message"]


def test_every_contested_name_is_listed(api: httpx.Client, nb: str) -> None:
    first = add(api, nb, "x = 1\ny = 1")["id"]

    second = add(api, nb, "x = 2\ny = 2")

    error = second["analysisError"]
    assert error["names"] == ["x", "y"]
    assert error["contested"] == [
        {"name": "x", "cellIds": [first]},
        {"name": "y", "cellIds": [first]},
    ]
    assert error["message"] == (
        "'x' is also defined by cell 1; 'y' is also defined by cell 1"
    )


def test_blocked_cells_lose_their_values(api: httpx.Client, nb: str) -> None:
    writer = add(api, nb, "x = 1")["id"]
    reader = add(api, nb, "y = x")["id"]
    probe = add(api, nb, "print('y' in globals())")["id"]
    run(api, nb, writer)
    api.put(f"/notebooks/{nb}/cells/{writer}", json={"code": "x = 1 / 0"})

    blocked = run(api, nb, writer)
    events = run(api, nb, probe)

    assert results(blocked)[reader]["status"] == "CELL_STATUS_BLOCKED"
    assert printed(events, probe) == "False\n"


def test_an_unchanged_import_cell_reruns_alone(api: httpx.Client, nb: str) -> None:
    imports = add(api, nb, "import math")["id"]
    add(api, nb, "print(math.floor(math.pi))")
    run(api, nb, imports)

    events = run(api, nb, imports)

    assert started(events) == [imports]


def test_sql_defines_what_it_creates(api: httpx.Client, nb: str) -> None:
    table = add(api, nb, "create table t as select 1 as n", type="CELL_TYPE_SQL")
    view = add(api, nb, "create view v as select * from t", type="CELL_TYPE_SQL")

    events = run(api, nb, table["id"])

    assert "t" in table["writes"]
    assert view["parentIds"] == [table["id"]]
    assert started(events) == [table["id"], view["id"]]


def test_a_finished_run_reads_back_at_once(api: httpx.Client, nb: str) -> None:
    cell = add(api, nb, "print('hi')")["id"]

    events = run(api, nb, cell)
    stored = cells(api, nb)[0]

    assert results(events)[cell]["status"] == "CELL_STATUS_SUCCESS"
    assert stored["status"] == "CELL_STATUS_SUCCESS"
    assert stored["result"]["stdout"] == "hi\n"


def test_lazy_mode_marks_descendants_stale(api: httpx.Client, nb: str) -> None:
    response = api.put(f"/notebooks/{nb}/run_mode", json={"runMode": "RUN_MODE_LAZY"})
    first = add(api, nb, "x = 1")["id"]
    second = add(api, nb, "print(x)")["id"]
    run(api, nb, second)
    api.put(f"/notebooks/{nb}/cells/{first}", json={"code": "x = 2"})

    events = run(api, nb, first)

    assert response.json()["notebook"]["runMode"] == "RUN_MODE_LAZY"
    assert started(events) == [first]
    assert results(events)[second]["status"] == "CELL_STATUS_STALE"
    assert cells(api, nb)[1]["status"] == "CELL_STATUS_STALE"


def test_disabled_cells_and_their_descendants_do_not_run(
    api: httpx.Client, nb: str
) -> None:
    first = add(api, nb, "x = 1")["id"]
    second = add(api, nb, "y = x")["id"]
    third = add(api, nb, "print(y)")["id"]
    response = api.put(
        f"/notebooks/{nb}/cells/{second}/disabled", json={"disabled": True}
    )

    events = run(api, nb, first)

    assert response.json()["cell"]["disabled"] is True
    assert started(events) == [first]
    assert results(events)[second]["status"] == "CELL_STATUS_DISABLED"
    assert results(events)[third]["disabledByCellId"] == second


def test_cells_carry_their_graph_and_every_error(api: httpx.Client, nb: str) -> None:
    first = add(api, nb, "x = y")["id"]
    second = add(api, nb, "y = x")["id"]

    found = cells(api, nb)

    assert found[0]["parentIds"] == [second]
    assert found[0]["childIds"] == [second]
    cycle = found[1]["analysisErrors"][0]
    assert cycle["kind"] == "KIND_CYCLE"
    assert cycle["cellIds"] == [first, second]
    assert cycle["message"] == "cells 1 and 2 form a dependency cycle"
