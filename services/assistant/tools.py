"""The assistant's tools: what the model may do to the notebook, and nothing more.

A tool is a name, an Args dataclass (its JSON schema is what the model sees,
see schema.py), and an async handler whose docstring is the description the
model reads. Handlers act through the notebook and execution services'
public RPCs (clients.py) as the user of the turn, so the assistant can do
exactly what that user could do, and the services' own checks apply.

A call goes ``prepare`` (known tool? offered in this turn? arguments valid?)
then ``execute``. Anything that goes wrong becomes a ``ToolError`` — a code,
a message and a hint — which the loop hands back to the model as the call's
result (``{"error": {...}}``), so it can fix its call or tell the user;
it never fails the user's request.

Tools that run code or delete (``run_cells``, ``interrupt``,
``delete_cell``) are marked ``dangerous``: with ``restrict_tools`` they are
not offered, and calling one anyway is refused as PERMISSION_DENIED.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, TypeVar

import grpc

from reflow.notebook.v1 import notebook_pb2
from services.assistant import digest
from services.assistant.llm import ToolSpec
from services.assistant.schema import (
    ArgumentsInvalid,
    arg,
    json_schema,
    parse_arguments,
)
from services.shared.errors import NotFound, ServiceError
from services.shared.status import status_code_for

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from services.assistant.clients import ExecutionClient, NotebookClient, UserTokens
    from services.assistant.config import ToolLimits
    from services.assistant.models import ToolCall

logger = logging.getLogger(__name__)

A = TypeVar("A")

_CELL_TYPES: Final = {
    "python": notebook_pb2.CELL_TYPE_PYTHON,
    "sql": notebook_pb2.CELL_TYPE_SQL,
    "markdown": notebook_pb2.CELL_TYPE_MARKDOWN,
}

_HINTS: Final = {
    "NOT_FOUND": "check the ids: read_notebook lists every cell with its id",
    "INVALID_ARGUMENT": "fix the arguments as the message says and call again",
    "ABORTED": "the notebook changed meanwhile: read it again, then retry",
    "FAILED_PRECONDITION": "the notebook is not in a state to do this; tell the user",
    "RESOURCE_EXHAUSTED": "a limit was reached (kernels, output); tell the user",
    "UNAVAILABLE": "the service is busy or starting; you may retry once",
    "DEADLINE_EXCEEDED": "it took too long; tell the user",
    "PERMISSION_DENIED": (
        "this tool is switched off for this conversation: do not call it again; "
        "tell the user what to run or delete themselves"
    ),
}


class ToolError(Exception):
    """A failure the model is told about, as the call's result."""

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint or _HINTS.get(code, "")

    def result(self) -> dict[str, Any]:
        """The call's result as the model sees it."""
        return {
            "error": {"code": self.code, "message": self.message, "hint": self.hint}
        }


@dataclass
class ToolContext:
    """What a handler acts on: one notebook, as one user, within limits."""

    notebook_id: str
    who: UserTokens
    notebooks: NotebookClient
    execution: ExecutionClient
    limits: ToolLimits
    # True from the moment a run_cells call starts a run until its end is
    # seen: if the turn stops in between, the loop interrupts the kernel.
    run_in_progress: bool = False


@dataclass(frozen=True)
class ToolResult:
    """A handler's answer: data for the model, a line for the user."""

    data: dict[str, Any]
    summary: str


@dataclass(frozen=True)
class Tool(Generic[A]):
    """One tool: its name, arguments, handler, and whether it is dangerous."""

    name: str
    args: type[A]
    handler: Callable[[A, ToolContext], Awaitable[ToolResult]]
    dangerous: bool = False

    @property
    def description(self) -> str:
        return inspect.getdoc(self.handler) or self.name

    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, json_schema(self.args))


@dataclass(frozen=True)
class PreparedCall:
    """A call whose tool is known and allowed and whose arguments are valid."""

    call: ToolCall
    tool: Tool[Any]
    args: Any

    @property
    def arguments_json(self) -> str:
        """The arguments as validated (defaults filled in)."""
        return json.dumps(dataclasses.asdict(self.args))


class Toolbox:
    """The tools offered in one turn."""

    def __init__(self, tools: Sequence[Tool[Any]], restricted: bool) -> None:
        self._tools = {tool.name: tool for tool in tools}
        self._restricted = restricted

    def specs(self) -> list[ToolSpec]:
        return [tool.spec() for tool in self._tools.values() if self._offered(tool)]

    def prepare(self, call: ToolCall) -> PreparedCall:
        """The call, checked; ToolError if it cannot be made."""
        tool = self._tools.get(call.name)
        if tool is None:
            offered = ", ".join(
                t.name for t in self._tools.values() if self._offered(t)
            )
            raise ToolError(
                "NOT_FOUND",
                f"there is no tool named {call.name!r}",
                f"use one of: {offered}",
            )
        if not self._offered(tool):
            raise ToolError(
                "PERMISSION_DENIED",
                f"{tool.name} is switched off: this conversation may read and edit "
                "the notebook but not run code or delete cells",
            )
        try:
            value = json.loads(call.arguments_json or "{}")
        except ValueError as error:
            raise ToolError(
                "INVALID_ARGUMENT",
                f"the arguments are not valid JSON ({error})",
                "send the arguments as one JSON object",
            ) from None
        try:
            args = parse_arguments(tool.args, value)
        except ArgumentsInvalid as error:
            raise ToolError(
                "INVALID_ARGUMENT",
                f"invalid arguments: {error}",
                "fix them to match the tool's parameters and call again",
            ) from None
        return PreparedCall(call, tool, args)

    async def execute(self, prepared: PreparedCall, context: ToolContext) -> ToolResult:
        """Run the call; ToolError for every failure the model should hear of."""
        try:
            return await prepared.tool.handler(prepared.args, context)
        except ServiceError as error:
            raise ToolError(status_code_for(error).name, error.message) from None
        except grpc.aio.AioRpcError as error:
            logger.error("tool %s failed: %s", prepared.tool.name, error.code().name)
            raise ToolError(
                "INTERNAL",
                f"the {prepared.tool.name} call failed unexpectedly",
                "do not retry; tell the user something went wrong",
            ) from None

    def _offered(self, tool: Tool[Any]) -> bool:
        return not (self._restricted and tool.dangerous)


# --- read ------------------------------------------------------------------


@dataclass(frozen=True)
class ReadNotebookArgs:
    cell_ids: tuple[str, ...] | None = arg(
        "Only these cells (default: every cell).", None
    )


async def read_notebook(args: ReadNotebookArgs, context: ToolContext) -> ToolResult:
    """Read the notebook: every cell's id, position, type, code, status, the
    names it reads and writes, analysis errors, and its last result (error,
    printed output and outputs, shortened; tables as column names, dtypes and
    row count). Call it first, and again after the user may have changed
    things."""
    notebook = await context.notebooks.get_notebook(context.who, context.notebook_id)
    cells = list(enumerate(notebook.cells))
    if args.cell_ids is not None:
        known = {cell.id for _, cell in cells}
        missing = [c for c in args.cell_ids if c not in known]
        if missing:
            raise NotFound(f"the notebook has no cell {missing[0]!r}")
        cells = [(i, cell) for i, cell in cells if cell.id in args.cell_ids]
    digests = [digest.cell_digest(cell, context.limits, i) for i, cell in cells]
    budget = context.limits.max_result_chars - 500
    kept, left_out = digest.fit(digests, budget)
    data: dict[str, Any] = {
        "notebook": {
            "id": notebook.id,
            "name": notebook.name,
            "cell_count": len(notebook.cells),
        },
        "cells": kept,
    }
    if left_out:
        data["cells_not_shown"] = left_out
        data["hint"] = "too long to show at once: read these with cell_ids"
    return ToolResult(data, f"read {len(kept)} of {len(notebook.cells)} cells")


# --- edit ------------------------------------------------------------------


@dataclass(frozen=True)
class CreateCellArgs:
    code: str = arg("The cell's source code.")
    type: Literal["python", "sql", "markdown"] = arg(
        "python (default), sql (a query; {name} refers to a Python value) or markdown.",
        "python",
    )
    index: int | None = arg("Position, 0 is first (default: at the end).", None)
    result_name: str | None = arg(
        "SQL cells: the variable the result DataFrame is bound to.", None
    )


async def create_cell(args: CreateCellArgs, context: ToolContext) -> ToolResult:
    """Add a cell to the notebook (it does not run it). Returns the new cell's
    id and the names it reads and writes. Each global name must be defined by
    exactly one cell."""
    request = notebook_pb2.CreateCellRequest(
        notebook_id=context.notebook_id,
        type=_CELL_TYPES[args.type],
        code=args.code,
        result_name=args.result_name or "",
    )
    if args.index is not None:
        request.index = args.index
    reply = await context.notebooks.create_cell(context.who, request)
    data = {"cell": digest.analysis_digest(reply.cell), **_affected(reply)}
    return ToolResult(data, f"created cell {reply.cell.id}")


@dataclass(frozen=True)
class UpdateCellArgs:
    cell_id: str = arg("The cell's id.")
    code: str = arg("The new source code (replaces all of it).")
    result_name: str | None = arg("SQL cells: a new result variable name.", None)


async def update_cell(args: UpdateCellArgs, context: ToolContext) -> ToolResult:
    """Replace a cell's code (it does not run it; the cell becomes stale).
    Returns the names it now reads and writes."""
    request = notebook_pb2.UpdateCellRequest(
        notebook_id=context.notebook_id, cell_id=args.cell_id, code=args.code
    )
    if args.result_name is not None:
        request.result_name = args.result_name
    reply = await context.notebooks.update_cell(context.who, request)
    data = {"cell": digest.analysis_digest(reply.cell), **_affected(reply)}
    return ToolResult(data, f"updated cell {args.cell_id}")


@dataclass(frozen=True)
class MoveCellArgs:
    cell_id: str = arg("The cell's id.")
    index: int = arg("Its new position; 0 is first.")


async def move_cell(args: MoveCellArgs, context: ToolContext) -> ToolResult:
    """Move a cell to another position. Order only matters for reading:
    dependencies decide the order cells run in."""
    reply = await context.notebooks.move_cell(
        context.who,
        notebook_pb2.MoveCellRequest(
            notebook_id=context.notebook_id, cell_id=args.cell_id, index=args.index
        ),
    )
    return ToolResult(
        {"cell_ids": list(reply.cell_ids)},
        f"moved cell {args.cell_id} to position {args.index}",
    )


@dataclass(frozen=True)
class DeleteCellArgs:
    cell_id: str = arg("The cell's id.")


async def delete_cell(args: DeleteCellArgs, context: ToolContext) -> ToolResult:
    """Delete a cell. The names it defined disappear; cells that used them
    will fail when they next run."""
    reply = await context.notebooks.delete_cell(
        context.who,
        notebook_pb2.DeleteCellRequest(
            notebook_id=context.notebook_id, cell_id=args.cell_id
        ),
    )
    return ToolResult(
        {"deleted": args.cell_id, **_affected(reply)}, f"deleted cell {args.cell_id}"
    )


def _affected(reply: Any) -> dict[str, Any]:
    cells = [digest.analysis_digest(cell) for cell in reply.affected_cells]
    return {"affected_cells": cells} if cells else {}


# --- run -------------------------------------------------------------------


@dataclass(frozen=True)
class RunCellsArgs:
    cell_ids: tuple[str, ...] = arg(
        "The cells to run; cells that depend on them run too. Empty: run "
        "every stale cell.",
        (),
    )


async def run_cells(args: RunCellsArgs, context: ToolContext) -> ToolResult:
    """Run cells in the notebook's kernel, with every cell that depends on
    them, and wait for the run to end. Returns each cell's status, error,
    printed output and outputs (shortened; tables as their schema)."""
    results: dict[str, notebook_pb2.CellResult] = {}
    status = notebook_pb2.CELL_STATUS_UNSPECIFIED
    context.run_in_progress = True
    try:
        events = context.execution.run_cells(
            context.who, context.notebook_id, list(args.cell_ids)
        )
        async for event in events:
            if event.HasField("cell_finished"):
                results[event.cell_id] = event.cell_finished.result
            elif event.HasField("run_finished"):
                status = event.run_finished.status
    except ServiceError:
        context.run_in_progress = False
        raise
    context.run_in_progress = False
    cells = [
        {"id": cell_id, **digest.result_digest(result, context.limits)}
        for cell_id, result in results.items()
    ]
    kept, left_out = digest.fit(cells, context.limits.max_result_chars - 500)
    data: dict[str, Any] = {"status": digest.status_name(status), "cells": kept}
    if left_out:
        data["cells_not_shown"] = left_out
        data["hint"] = "too long to show at once: read these with read_notebook"
    summary = f"ran {len(results)} cells: {digest.status_name(status)}"
    return ToolResult(data, summary)


@dataclass(frozen=True)
class InterruptArgs:
    pass


async def interrupt(args: InterruptArgs, context: ToolContext) -> ToolResult:
    """Interrupt the cell running in the notebook's kernel and drop the rest
    of its run. The kernel keeps its state."""
    try:
        interrupted = await context.execution.interrupt(
            context.who, context.notebook_id
        )
    except NotFound:
        interrupted = False  # no kernel: nothing was running
    summary = "interrupted the running cell" if interrupted else "nothing was running"
    return ToolResult({"interrupted": interrupted}, summary)


TOOLS: Final[tuple[Tool[Any], ...]] = (
    Tool("read_notebook", ReadNotebookArgs, read_notebook),
    Tool("create_cell", CreateCellArgs, create_cell),
    Tool("update_cell", UpdateCellArgs, update_cell),
    Tool("move_cell", MoveCellArgs, move_cell),
    Tool("delete_cell", DeleteCellArgs, delete_cell, dangerous=True),
    Tool("run_cells", RunCellsArgs, run_cells, dangerous=True),
    Tool("interrupt", InterruptArgs, interrupt, dangerous=True),
)
"""Every tool, in the order they are offered."""
