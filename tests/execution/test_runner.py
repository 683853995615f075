"""The run loop on its own: a fake in-process kernel, no gRPC, no processes.

Each case is a list of steps on one session's kernel: the notebook as it is
at that step (Python cells by id, in order; a cell id ending in `!` is
disabled), the cells asked to run, and what the step must show: which cells
the kernel ran, in order, and each reported cell's status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from reflow.execution.v1 import execution_pb2, kernel_pb2
from reflow.notebook.v1 import notebook_pb2
from services.execution.config import KernelSettings
from services.execution.kernel.private import private_pattern
from services.execution.ledger import KernelLedger
from services.execution.lifecycle import KernelLifecycle
from services.execution.runner import Runner
from services.execution.runs import MergedRun, RunState
from services.shared.dataflow import CellId, analyse_python

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

S = notebook_pb2.CellStatus
OK, ERROR, BLOCKED = S.CELL_STATUS_SUCCESS, S.CELL_STATUS_ERROR, S.CELL_STATUS_BLOCKED
STALE, DISABLED = S.CELL_STATUS_STALE, S.CELL_STATUS_DISABLED


class FakeKernel:
    """Runs nothing: a cell whose code contains `raise` fails, others succeed.
    Remembers what it was asked to run and to delete."""

    pid = 4242
    start_time = 0.0

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.deleted: list[str] = []

    @property
    def alive(self) -> bool:
        return True

    async def execute(
        self, request: kernel_pb2.ExecuteRequest
    ) -> AsyncIterator[kernel_pb2.KernelEvent]:
        self.ran.append(request.cell_id)
        self.deleted.extend(request.delete_names)
        status = ERROR if "raise" in request.code else OK
        done = kernel_pb2.ExecuteDone(status=status)
        yield kernel_pb2.KernelEvent(cell_id=request.cell_id, done=done)

    async def delete_names(self, names: Sequence[str]) -> None:
        self.deleted.extend(names)

    async def query(self, request: kernel_pb2.KernelRequest) -> kernel_pb2.KernelEvent:
        failed = kernel_pb2.QueryFailed(message="a fake kernel knows nothing")
        return kernel_pb2.KernelEvent(query_failed=failed)

    async def workdir(
        self, request: kernel_pb2.WorkdirRequest
    ) -> kernel_pb2.WorkdirDone:
        return kernel_pb2.WorkdirDone(error="a fake kernel has no files")

    def interrupt(self) -> None: ...

    def kill(self) -> None: ...

    async def shutdown(self, timeout_s: float = 5.0) -> str:
        return "shut down"

    def memory_bytes(self) -> int:
        return 0


def notebook_of(cells: dict[str, str], lazy: bool = False) -> notebook_pb2.Notebook:
    """Python cells analysed as the notebook service would."""
    mode = notebook_pb2.RUN_MODE_LAZY if lazy else notebook_pb2.RUN_MODE_AUTOMATIC
    notebook = notebook_pb2.Notebook(id="nb", run_mode=mode)
    for key, code in cells.items():
        analysis = analyse_python(code)
        cell = notebook.cells.add(
            id=key.rstrip("!"),
            type=notebook_pb2.CELL_TYPE_PYTHON,
            code=code,
            reads=sorted(analysis.reads),
            writes=sorted(analysis.writes),
            deletes=sorted(analysis.deletes),
            disabled=key.endswith("!"),
        )
        if analysis.error:
            cell.analysis_error.kind = notebook_pb2.AnalysisError.KIND_SYNTAX
            cell.analysis_error.message = analysis.error
    return notebook


@dataclass(frozen=True)
class Step:
    cells: dict[str, str]
    run: set[str]
    ran: list[str]
    statuses: dict[str, int] = field(default_factory=dict)
    lazy: bool = False
    all_stale: bool = False


@dataclass(frozen=True)
class Case:
    name: str
    steps: list[Step]


CHAIN = {"a": "x = 1", "b": "y = x", "c": "z = y"}

CASES = [
    Case("a chain runs in order", [Step(CHAIN, {"a"}, ["a", "b", "c"])]),
    Case(
        "a failure blocks what is downstream",
        [
            Step(
                {"a": "raise ValueError\nx = 1", "b": "y = x", "c": "z = y"},
                {"a"},
                ["a"],
                {"a": ERROR, "b": BLOCKED, "c": BLOCKED},
            )
        ],
    ),
    Case(
        "a multiple definition skips the cell run, and resolving it reruns it",
        [
            Step({"a": "x = 1"}, {"a"}, ["a"]),
            Step({"a": "x = 1", "b": "x = 2"}, {"a"}, [], {"a": ERROR}),
            Step({"a": "x = 1", "b": "w = 2"}, set(), ["a"], {"a": OK}),
        ],
    ),
    Case(
        "the holder of a contested name fails once it is run",
        [
            Step({"a": "x = 1", "r": "print(x)"}, {"a"}, ["a", "r"]),
            Step(
                {"a": "x = 1", "r": "print(x)", "b": "x = 2"},
                {"a"},
                [],
                {"a": ERROR, "r": BLOCKED},
            ),
        ],
    ),
    Case(
        "in lazy mode a resolved conflict marks the held cell stale",
        [
            Step({"a": "x = 1"}, {"a"}, ["a"], lazy=True),
            Step({"a": "x = 1", "b": "x = 2"}, {"a"}, [], {"a": ERROR}, lazy=True),
            Step({"a": "x = 1", "b": "w = 2"}, set(), [], {"a": STALE}, lazy=True),
        ],
    ),
    Case(
        "in lazy mode enabling a cell marks it stale",
        [
            Step({"a": "x = 1", "b!": "y = x"}, {"a"}, ["a"], {"a": OK, "b": DISABLED}),
            Step({"a": "x = 1", "b": "y = x"}, set(), [], {"b": STALE}, lazy=True),
            Step({"a": "x = 1", "b": "y = x"}, {"b"}, ["b"], lazy=True),
        ],
    ),
    Case(
        "lazy mode marks descendants stale and runs them when asked",
        [
            Step(CHAIN, {"a"}, ["a", "b", "c"]),
            Step(CHAIN, {"a"}, ["a"], {"a": OK, "b": STALE, "c": STALE}, lazy=True),
            Step(CHAIN, {"c"}, ["b", "c"], lazy=True),
        ],
    ),
    Case(
        "lazy mode runs stale and never-run ancestors first",
        [
            Step(CHAIN, {"c"}, ["a", "b", "c"], lazy=True),
            Step(
                {"a": "x = 2", "b": "y = x", "c": "z = y"},
                {"c"},
                ["a", "c"],
                {"a": OK, "b": STALE, "c": OK},
                lazy=True,
            ),
        ],
    ),
    Case(
        "a disabled cell and its descendants do not run",
        [
            Step(
                {"a": "x = 1", "b!": "y = x", "c": "z = y", "d": "w = x"},
                {"a"},
                ["a", "d"],
                {"a": OK, "b": DISABLED, "c": DISABLED, "d": OK},
            ),
            Step(
                {"a": "x = 1", "b": "y = x", "c": "z = y", "d": "w = x"},
                set(),
                ["b", "c"],
            ),
        ],
    ),
    Case(
        "an unchanged import cell does not rerun its dependents",
        [
            Step({"a": "import math", "b": "r = math.pi"}, {"a"}, ["a", "b"]),
            Step({"a": "import math", "b": "r = math.pi"}, {"a"}, ["a"]),
            Step(
                {"a": "import math, os", "b": "r = math.pi", "c": "s = os.sep"},
                {"a"},
                ["a", "c"],
            ),
        ],
    ),
    Case(
        "a deleted cell's dependents rerun",
        [
            Step(CHAIN, {"a"}, ["a", "b", "c"]),
            Step({"b": "y = x", "c": "z = y"}, set(), ["b", "c"]),
        ],
    ),
    Case(
        "running every stale cell",
        [
            Step(CHAIN, {"a"}, ["a", "b", "c"]),
            Step({**CHAIN, "b": "y = x + 1"}, set(), ["b", "c"], all_stale=True),
        ],
    ),
]

SETTINGS = KernelSettings()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_run_loop(case: Case) -> None:
    kernel = FakeKernel()
    ledger = KernelLedger()
    events: list[execution_pb2.ExecutionEvent] = []
    recorded: list[tuple[CellId, notebook_pb2.CellResult]] = []

    async def spawn() -> FakeKernel:
        return kernel

    def emit(run_id: str, event: execution_pb2.ExecutionEvent) -> None:
        events.append(event)

    lifecycle = KernelLifecycle(spawn, SETTINGS, ledger, emit)
    runner = Runner(
        lifecycle, ledger, SETTINGS, emit, lambda c, r: recorded.append((c, r))
    )

    for number, step in enumerate(case.steps):
        kernel.ran.clear()
        recorded.clear()
        merged = MergedRun(
            cells=frozenset(CellId(c) for c in step.run),
            notebook=notebook_of(step.cells, step.lazy),
            database_url="",
            run_all_stale=step.all_stale,
        )

        await runner.execute(RunState(f"run{number}"), merged)

        statuses = {cell: result.status for cell, result in recorded}
        assert kernel.ran == step.ran, f"step {number}"
        expected = step.statuses or dict.fromkeys(step.ran, OK)
        assert statuses == expected, f"step {number}"


async def test_a_blocked_cell_loses_its_names_and_private_names() -> None:
    kernel = FakeKernel()
    ledger = KernelLedger()

    async def spawn() -> FakeKernel:
        return kernel

    lifecycle = KernelLifecycle(spawn, SETTINGS, ledger, lambda r, e: None)
    runner = Runner(lifecycle, ledger, SETTINGS, lambda r, e: None, lambda c, r: None)
    first = notebook_of({"a": "x = 1", "b": "y = x"})
    await runner.execute(
        RunState("1"), MergedRun(frozenset({CellId("a")}), first, "", False)
    )
    kernel.deleted.clear()

    failing = notebook_of({"a": "raise ValueError\nx = 1", "b": "y = x"})
    await runner.execute(
        RunState("2"), MergedRun(frozenset({CellId("a")}), failing, "", False)
    )

    assert "y" in kernel.deleted
    assert private_pattern("b") in kernel.deleted
    assert not ledger.has_run(CellId("b"))
