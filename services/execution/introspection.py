"""Introspection of a notebook's kernel: completions, variables, table rows.

The kernel answers these at once, even while a cell runs (`kernel/inbox.py`),
so none of them waits for a run or holds one up. With no kernel there is
nothing to ask: completions and variables are empty lists saying so
(`kernel_running` false; a keystroke must never start a kernel), and table
rows are FAILED_PRECONDITION, since the rows went with the kernel.

The kernel is untrusted: its reply must be the kind asked for, and what it
holds is cut to the documented limits before it reaches a caller.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from reflow.execution.v1 import execution_pb2, kernel_pb2
from services.shared.errors import FailedPrecondition, Unavailable

if TYPE_CHECKING:
    from reflow.notebook.v1 import notebook_pb2
    from services.execution.session import Session

# A kernel stuck in C code that holds the GIL cannot answer; say so rather
# than leave the caller waiting for the cell.
QUERY_TIMEOUT_S: Final = 10.0
MAX_COMPLETIONS: Final = 200
MAX_VARIABLES: Final = 1000
MAX_TEXT_CHARS: Final = 200
DEFAULT_ROWS: Final = 100
MAX_ROWS: Final = 1000


async def complete(
    session: Session | None, code: str, cursor_offset: int
) -> execution_pb2.CompleteResponse:
    """The kernel's completions at the cursor; empty without a kernel."""
    query = kernel_pb2.CompletionQuery(code=code, cursor_offset=cursor_offset)
    reply = await _ask(session, kernel_pb2.KernelRequest(completion_query=query))
    if reply is None:
        return execution_pb2.CompleteResponse()
    answer = _expect(reply, "completions").completions
    response = execution_pb2.CompleteResponse(
        kernel_running=True,
        prefix_length=min(max(answer.prefix_length, 0), cursor_offset),
    )
    for completion in answer.completions[:MAX_COMPLETIONS]:
        response.completions.add(
            text=completion.text[:MAX_TEXT_CHARS], kind=completion.kind[:32]
        )
    return response


async def list_variables(
    session: Session | None,
) -> execution_pb2.ListVariablesResponse:
    """The kernel's globals, each with the cell that defined it."""
    query = kernel_pb2.KernelRequest(variables_query=kernel_pb2.VariablesQuery())
    reply = await _ask(session, query)
    if session is None or reply is None:
        return execution_pb2.ListVariablesResponse()
    defined_by = session.definers()
    response = execution_pb2.ListVariablesResponse(kernel_running=True)
    for variable in _expect(reply, "variables").variables.variables[:MAX_VARIABLES]:
        response.variables.add(
            name=variable.name[:MAX_TEXT_CHARS],
            type=variable.type[:MAX_TEXT_CHARS],
            shape=variable.shape[:MAX_TEXT_CHARS],
            repr=variable.repr[:MAX_TEXT_CHARS],
            cell_id=defined_by.get(variable.name, ""),
        )
    return response


async def table_rows(
    session: Session | None, table_id: str, offset: int, limit: int
) -> notebook_pb2.Table:
    """Rows of a displayed table, from the kernel that displayed it."""
    limit = min(limit or DEFAULT_ROWS, MAX_ROWS)
    query = kernel_pb2.TableRowsQuery(table_id=table_id, offset=offset, limit=limit)
    reply = await _ask(session, kernel_pb2.KernelRequest(table_rows_query=query))
    if reply is None or (
        reply.WhichOneof("event") == "query_failed" and reply.query_failed.not_found
    ):
        raise FailedPrecondition(
            f"table {table_id!r} is no longer in the notebook's kernel (the kernel "
            "restarted, or its cell ran again): re-run the cell to page its rows",
            reason="TABLE_GONE",
        )
    table = _expect(reply, "table_rows").table_rows
    del table.rows[limit:]
    return table


async def _ask(
    session: Session | None, request: kernel_pb2.KernelRequest
) -> kernel_pb2.KernelEvent | None:
    kernel = session.kernel if session is not None else None
    if kernel is None or not kernel.alive:
        return None
    try:
        async with asyncio.timeout(QUERY_TIMEOUT_S):
            return await kernel.query(request)
    except TimeoutError:
        raise Unavailable(
            f"the notebook's kernel did not answer within {QUERY_TIMEOUT_S:g} s "
            "(it may be busy in code that does not let other threads run)",
            reason="KERNEL_BUSY",
        ) from None


def _expect(reply: kernel_pb2.KernelEvent, kind: str) -> kernel_pb2.KernelEvent:
    answered = reply.WhichOneof("event")
    if answered == kind:
        return reply
    if answered == "query_failed":
        raise Unavailable(
            f"the notebook's kernel could not answer: {reply.query_failed.message}"[
                :500
            ],
            reason="KERNEL_QUERY_FAILED",
        )
    raise Unavailable(
        f"the notebook's kernel answered a {kind} query with {answered}",
        reason="KERNEL_MISBEHAVED",
    )
