"""Issue 11's reactive rules, multi-step, on real kernels through real services.

Each case is a script of steps on one notebook, run against the notebook and
execution services on port 0 with real kernels. Cells are named by the order
they were added (0, 1, ...). Steps:

* `add(code)`, `sql(code)`, `edit(n, code)`, `delete(n)`, `disable(n, flag)`,
  `lazy()`: change the notebook;
* `run(*n)`: run cells (none: every stale cell) and keep the run's events;
* `watched(step)`: do `step` while watching the notebook's executions, and
  keep the events of the run it sets off (a run nobody asked for);
* `ran(*n)`, `status(n, s)`, `out(n, text)`, `error(n, text)`: check the
  events kept last.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from reflow.execution.v1 import execution_pb2
from reflow.notebook.v1 import notebook_pb2 as pb
from tests.execution.conftest import finished, stdout_of

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tests.execution.conftest import Stack

S = pb.CellStatus
OK, ERROR, BLOCKED = S.CELL_STATUS_SUCCESS, S.CELL_STATUS_ERROR, S.CELL_STATUS_BLOCKED
STALE, DISABLED = S.CELL_STATUS_STALE, S.CELL_STATUS_DISABLED


@dataclass
class Script:
    """The notebook a case works on, and the events it saw last."""

    stack: Stack
    notebook_id: str
    cells: list[str]
    events: list[execution_pb2.ExecutionEvent]

    def id(self, number: int) -> str:
        return self.cells[number]


def add(code: str) -> Callable[[Script], Awaitable[None]]:
    async def step(s: Script) -> None:
        s.cells.append(await s.stack.add(s.notebook_id, code))

    return step


def sql(code: str) -> Callable[[Script], Awaitable[None]]:
    async def step(s: Script) -> None:
        cell = await s.stack.add(s.notebook_id, code, cell_type=pb.CELL_TYPE_SQL)
        s.cells.append(cell)

    return step


def edit(number: int, code: str) -> Callable[[Script], Awaitable[None]]:
    async def step(s: Script) -> None:
        await s.stack.edit(s.notebook_id, s.id(number), code)

    return step


def delete(number: int) -> Callable[[Script], Awaitable[None]]:
    async def step(s: Script) -> None:
        await s.stack.notebooks.DeleteCell(
            pb.DeleteCellRequest(notebook_id=s.notebook_id, cell_id=s.id(number)),
            metadata=s.stack.metadata(),
        )

    return step


def disable(number: int, flag: bool = True) -> Callable[[Script], Awaitable[None]]:
    async def step(s: Script) -> None:
        await s.stack.notebooks.SetCellDisabled(
            pb.SetCellDisabledRequest(
                notebook_id=s.notebook_id, cell_id=s.id(number), disabled=flag
            ),
            metadata=s.stack.metadata(),
        )

    return step


def lazy() -> Callable[[Script], Awaitable[None]]:
    async def step(s: Script) -> None:
        await s.stack.notebooks.SetRunMode(
            pb.SetRunModeRequest(notebook_id=s.notebook_id, run_mode=pb.RUN_MODE_LAZY),
            metadata=s.stack.metadata(),
        )

    return step


def run(*numbers: int) -> Callable[[Script], Awaitable[None]]:
    async def step(s: Script) -> None:
        s.events = await s.stack.run(s.notebook_id, *(s.id(n) for n in numbers))

    return step


def watched(
    change: Callable[[Script], Awaitable[None]],
) -> Callable[[Script], Awaitable[None]]:
    async def step(s: Script) -> None:
        watch = s.stack.execution.WatchExecution(
            execution_pb2.WatchExecutionRequest(notebook_id=s.notebook_id),
            metadata=s.stack.metadata(),
        )
        # Headers arrive once the watch is subscribed: nothing is missed.
        await watch.initial_metadata()
        await change(s)
        s.events = await asyncio.wait_for(_next_run(watch), timeout=30)
        watch.cancel()

    return step


async def _next_run(
    watch: object,
) -> list[execution_pb2.ExecutionEvent]:
    seen: list[execution_pb2.ExecutionEvent] = []
    async for reply in watch:  # type: ignore[attr-defined]
        event = reply.event
        if event.HasField("run_started") or seen:
            seen.append(event)
        if event.HasField("run_finished") and seen:
            return seen
    return seen


def ran(*numbers: int) -> Callable[[Script], Awaitable[None]]:
    async def step(s: Script) -> None:
        started = [e.cell_id for e in s.events if e.HasField("cell_started")]
        assert started == [s.id(n) for n in numbers]

    return step


def status(number: int, expected: int) -> Callable[[Script], Awaitable[None]]:
    async def step(s: Script) -> None:
        assert finished(s.events)[s.id(number)].status == expected

    return step


def out(number: int, text: str) -> Callable[[Script], Awaitable[None]]:
    async def step(s: Script) -> None:
        assert stdout_of(s.events, s.id(number)) == text

    return step


def error(number: int, text: str) -> Callable[[Script], Awaitable[None]]:
    async def step(s: Script) -> None:
        assert text in finished(s.events)[s.id(number)].error.message

    return step


@dataclass(frozen=True)
class Case:
    name: str
    steps: list[Callable[[Script], Awaitable[None]]]


PROBE_Y = "print('y' in globals())"

CASES = [
    # 1. del is an edge
    Case(
        "running the writer runs the deleter after the readers",
        [add("del x"), add("x = 1"), add("print(x)"), run(1), ran(1, 2, 0)],
    ),
    Case(
        "two deleters of one name are a cycle",
        [add("x = 1"), add("del x"), add("del x"), run(0), error(1, "cycle")],
    ),
    # 2. augmented assignment and dunders
    Case(
        "augmented assignment of another cell's name is a multiple definition",
        [add("x = 1"), add("x += 1"), run(1), error(1, "also defined by cell 1")],
    ),
    Case(
        "dunder names link cells",
        [add("__all__ = ['f']"), add("print(__all__)"), run(0), out(1, "['f']\n")],
    ),
    # 3. private names
    Case(
        "a private name is invisible to other cells",
        [add("_tmp = 5"), add("print(_tmp)"), run(0, 1), error(1, "'_tmp'")],
    ),
    Case(
        "functions keep their cell's private names",
        [
            add("_base = 40\ndef f():\n    return _base + 2"),
            add("print(f())"),
            run(0),
            out(1, "42\n"),
        ],
    ),
    Case(
        "a private name does not survive its cell's next run",
        [
            add("_seen = 1"),
            run(0),
            edit(0, "print(_seen)"),
            run(0),
            error(0, "name '_seen' is not defined"),
        ],
    ),
    # 4. multiple definitions act where they are run
    Case(
        "a newcomer errors, the holder keeps its value until it is run",
        [
            add("x = 1"),
            add("print(x)"),
            run(0),
            add("x = 2"),
            run(2),
            status(2, ERROR),
            error(2, "'x' is also defined by cell 1"),
            run(1),
            out(1, "1\n"),
            run(0),
            status(0, ERROR),
            status(1, BLOCKED),
        ],
    ),
    Case(
        "an edited holder loses its value",
        [
            add("x = 1"),
            add("print('x' in globals())"),
            run(0),
            add("x = 2"),
            watched(edit(0, "x = 3")),
            run(1),
            out(1, "False\n"),
        ],
    ),
    Case(
        "resolving a conflict reruns the cells it blocked",
        [
            add("x = 1"),
            add("print(x)"),
            run(0),
            add("x = 2"),
            run(0),
            status(1, BLOCKED),
            watched(edit(2, "w = 2")),
            ran(0, 1),
            out(1, "1\n"),
        ],
    ),
    # 5. no stale value survives an error
    Case(
        "blocked cells lose their values",
        [
            add("x = 1"),
            add("y = x * 2"),
            add(PROBE_Y),
            run(0),
            edit(0, "x = 1 / 0"),
            run(0),
            status(1, BLOCKED),
            run(2),
            out(2, "False\n"),
        ],
    ),
    Case(
        "a cell skipped for an analysis error loses its values",
        [
            add("x = 1"),
            add("y = x"),
            add(PROBE_Y),
            run(0),
            edit(1, "y = x\nz = ("),
            run(1),
            status(1, ERROR),
            run(2),
            out(2, "False\n"),
        ],
    ),
    # 6. import-only cells
    Case(
        "rerunning an unchanged import cell does not rerun its dependents",
        [
            add("import math"),
            add("print(math.floor(math.pi))"),
            run(0),
            ran(0, 1),
            run(0),
            ran(0),
        ],
    ),
    Case(
        "an import cell reruns the readers of what it newly imports",
        [
            add("import math"),
            add("print(math.floor(math.pi))"),
            add("import os\nprint(os.sep)"),
            run(0),
            edit(2, "print(os.sep)"),
            edit(0, "import math, os"),
            run(0),
            ran(0, 2),
        ],
    ),
    # 7. SQL defines what it creates
    Case(
        "a view over a table another SQL cell created runs after it",
        [
            sql("create table t as select 41 as n"),
            sql("create view v as select n + 1 as m from t"),
            sql("select * from v"),
            run(0),
            ran(0, 1, 2),
            status(2, OK),
        ],
    ),
    Case(
        "re-running a SQL cell recreates the table it created",
        [sql("create table t as select 1 as n"), run(0), run(0), status(0, OK)],
    ),
    Case(
        "a SQL table and a Python global of one name are contested",
        [add("t = 1"), sql("create table t as select 1"), run(1), error(1, "'t'")],
    ),
    # 9. lazy mode
    Case(
        "lazy mode marks descendants stale, and brings them up to date on request",
        [
            add("x = 1"),
            add("y = x + 1"),
            add("print(y)"),
            run(0),
            lazy(),
            edit(0, "x = 10"),
            run(0),
            ran(0),
            status(1, STALE),
            status(2, STALE),
            run(2),
            ran(1, 2),
            out(2, "11\n"),
        ],
    ),
    # 10. disabled cells
    Case(
        "a disabled cell and its descendants do not run, and enabling runs them",
        [
            add("x = 1"),
            add("y = x + 1"),
            add("print(y)"),
            disable(1),
            run(0),
            ran(0),
            status(1, DISABLED),
            status(2, DISABLED),
            watched(disable(1, flag=False)),
            ran(1, 2),
            out(2, "2\n"),
        ],
    ),
    Case(
        "editing a disabled cell deletes its old names",
        [
            add("y = 5"),
            add("print('y' in globals())"),
            run(0),
            disable(0),
            watched(edit(0, "y = 6")),
            run(1),
            out(1, "False\n"),
        ],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_rule(stack: Stack, case: Case) -> None:
    notebook_id, *_ = await stack.notebook()
    script = Script(stack, notebook_id, [], [])

    for step in case.steps:
        await step(script)


async def test_a_finished_run_reads_back_at_once(stack: Stack) -> None:
    notebook_id, cell = await stack.notebook("print('hi')\n6 * 7")

    events = await stack.run(notebook_id, cell)
    got = await stack.notebooks.GetNotebook(
        pb.GetNotebookRequest(notebook_id=notebook_id), metadata=stack.metadata()
    )

    stored = got.notebook.cells[0]
    assert stored.status == finished(events)[cell].status == OK
    assert stored.result.stdout == "hi\n"
    assert stored.result.execution_count == finished(events)[cell].execution_count
