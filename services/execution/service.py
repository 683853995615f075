"""The execution service's gRPC edge: validate, find the session, stream."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from reflow.execution.v1 import execution_pb2, execution_pb2_grpc
from services.execution import introspection
from services.execution.errors import KernelNotFound
from services.execution.files import FileListing
from services.execution.runs import RunRequest
from services.shared.auth import current_token, current_user
from services.shared.dataflow import CellId
from services.shared.errors import InvalidArgument
from services.shared.validation import Violations

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable

    import grpc

    from reflow.notebook.v1 import notebook_pb2
    from services.execution.clients import NotebookClient
    from services.execution.session import Session
    from services.execution.sessions import SessionManager

    Context = grpc.aio.ServicerContext[object, object]

_MAX_PAGE = 100
FOLLOW_WAIT_S = 0.25
"""How long a run waits for the followed copy to reach the caller's revision
(an edit reaches it within milliseconds) before reading the notebook."""
# As the notebook service's default NOTEBOOK_MAX_CODE_BYTES.
_MAX_CODE_BYTES = 1024 * 1024


class ExecutionServicer(execution_pb2_grpc.ExecutionServiceServicer):
    """Runs, interrupts and describes the caller's kernels."""

    def __init__(
        self, sessions: SessionManager, notebooks: NotebookClient, replica_id: str = ""
    ) -> None:
        self._sessions = sessions
        self._notebooks = notebooks
        self.replica_id = replica_id

    async def RunCells(
        self, request: execution_pb2.RunCellsRequest, context: Context
    ) -> AsyncIterator[execution_pb2.RunCellsResponse]:
        check = Violations()
        check.identifier("notebook_id", request.notebook_id)
        for index, cell_id in enumerate(request.cell_ids):
            check.identifier(f"cell_ids[{index}]", cell_id)
        check.not_negative("min_revision", request.min_revision)
        check.raise_if_any()
        notebook, database_url, files = await self._notebook_to_run(request)
        known = {cell.id for cell in notebook.cells}
        unknown = [c for c in request.cell_ids if c not in known]
        if unknown:
            raise InvalidArgument(
                f"notebook {request.notebook_id!r} has no cell {unknown[0]!r}",
                field_violations=[("cell_ids", f"unknown cell {unknown[0]!r}")],
            )
        session = self._sessions.session(current_user(), request.notebook_id)
        run = RunRequest(
            cells=frozenset(CellId(c) for c in request.cell_ids),
            notebook=notebook,
            database_url=database_url,
            stale=not request.cell_ids,
            files=files,
        )
        async for event in session.run(run):
            yield execution_pb2.RunCellsResponse(event=event)

    async def _notebook_to_run(
        self, request: execution_pb2.RunCellsRequest
    ) -> tuple[notebook_pb2.Notebook, str, FileListing | None]:
        """The notebook (as new as the caller has seen), its database URL and
        its files (None from the copy: the run lists them).

        From the session's followed copy when the caller named a revision
        and the copy has reached it; otherwise read from the notebook
        service, which also settles that the notebook is the caller's (a
        session exists only for its owner's notebook).
        """
        token = current_token()
        notebook_id = request.notebook_id
        session = self._sessions.live(current_user(), notebook_id)
        if request.min_revision and session is not None:
            copy = await session.followed.at_least(
                request.min_revision,
                FOLLOW_WAIT_S,
                lambda: self._notebooks.get_database_url(token, notebook_id),
            )
            # A cell the copy lacks: the caller's revision was too old; read.
            if copy is not None and _has_cells(copy.notebook, request.cell_ids):
                return copy.notebook, copy.database_url, None
        reply = await self._notebooks.get_notebook_and_files(token, notebook_id)
        notebook = reply.notebook
        database_url = ""
        if notebook.database_url:
            database_url = await self._notebooks.get_database_url(token, notebook_id)
        return notebook, database_url, FileListing.of(reply)

    async def WatchExecution(
        self, request: execution_pb2.WatchExecutionRequest, context: Context
    ) -> AsyncIterator[execution_pb2.WatchExecutionResponse]:
        check = Violations()
        check.identifier("notebook_id", request.notebook_id)
        check.raise_if_any()
        # Reading the notebook settles that it exists and is the caller's.
        await self._notebooks.get_notebook(current_token(), request.notebook_id)
        session = self._sessions.session(current_user(), request.notebook_id)

        async def subscribed() -> None:
            # Headers now tell a client the watch misses nothing from here on.
            await context.send_initial_metadata(())

        async for event in session.watch(subscribed):
            yield execution_pb2.WatchExecutionResponse(event=event)

    async def InterruptKernel(
        self, request: execution_pb2.InterruptKernelRequest, context: Context
    ) -> execution_pb2.InterruptKernelResponse:
        session = self._existing(request.notebook_id)
        return execution_pb2.InterruptKernelResponse(interrupted=session.interrupt())

    async def RestartKernel(
        self, request: execution_pb2.RestartKernelRequest, context: Context
    ) -> execution_pb2.RestartKernelResponse:
        session = self._existing(request.notebook_id)
        await session.restart()
        return execution_pb2.RestartKernelResponse(kernel=self._describe(session))

    async def GetKernel(
        self, request: execution_pb2.GetKernelRequest, context: Context
    ) -> execution_pb2.GetKernelResponse:
        session = self._existing(request.notebook_id)
        return execution_pb2.GetKernelResponse(kernel=self._describe(session))

    async def ListKernels(
        self, request: execution_pb2.ListKernelsRequest, context: Context
    ) -> execution_pb2.ListKernelsResponse:
        check = Violations()
        check.not_negative("page_size", request.page_size)
        start = _page_start(request.page_token, check)
        check.raise_if_any()
        size = min(request.page_size or 50, _MAX_PAGE)
        sessions = self._sessions.of_owner(current_user())
        page = sessions[start : start + size]
        more = start + size < len(sessions)
        return execution_pb2.ListKernelsResponse(
            kernels=[self._describe(session) for session in page],
            next_page_token=_page_token(start + size) if more else "",
        )

    async def ShutdownKernel(
        self, request: execution_pb2.ShutdownKernelRequest, context: Context
    ) -> execution_pb2.ShutdownKernelResponse:
        session = self._existing(request.notebook_id)
        await session.shutdown()
        return execution_pb2.ShutdownKernelResponse()

    async def Complete(
        self, request: execution_pb2.CompleteRequest, context: Context
    ) -> execution_pb2.CompleteResponse:
        check = Violations()
        check.identifier("notebook_id", request.notebook_id)
        if request.cell_id:
            check.identifier("cell_id", request.cell_id)
        check.code("code", request.code, _MAX_CODE_BYTES)
        check.not_negative("cursor_offset", request.cursor_offset)
        if request.cursor_offset > len(request.code):
            check.add("cursor_offset", "is past the end of the code")
        check.raise_if_any()
        session = await self._session_if_any(request.notebook_id)
        return await introspection.complete(
            session, request.code, request.cursor_offset
        )

    async def ListVariables(
        self, request: execution_pb2.ListVariablesRequest, context: Context
    ) -> execution_pb2.ListVariablesResponse:
        check = Violations()
        check.identifier("notebook_id", request.notebook_id)
        check.raise_if_any()
        session = await self._session_if_any(request.notebook_id)
        return await introspection.list_variables(session)

    async def GetTableRows(
        self, request: execution_pb2.GetTableRowsRequest, context: Context
    ) -> execution_pb2.GetTableRowsResponse:
        check = Violations()
        check.identifier("notebook_id", request.notebook_id)
        check.identifier("table_id", request.table_id)
        check.not_negative("offset", request.offset)
        check.not_negative("limit", request.limit)
        check.raise_if_any()
        session = await self._session_if_any(request.notebook_id)
        table = await introspection.table_rows(
            session, request.table_id, request.offset, request.limit
        )
        return execution_pb2.GetTableRowsResponse(table=table)

    async def _session_if_any(self, notebook_id: str) -> Session | None:
        """The caller's session of the notebook; None (after checking the
        notebook is the caller's) when it has none."""
        try:
            return self._sessions.existing(current_user(), notebook_id)
        except KernelNotFound:
            await self._notebooks.get_notebook(current_token(), notebook_id)
            return None

    def _describe(self, session: Session) -> execution_pb2.Kernel:
        kernel = session.describe()
        kernel.replica_id = self.replica_id
        return kernel

    def _existing(self, notebook_id: str) -> Session:
        check = Violations()
        check.identifier("notebook_id", notebook_id)
        check.raise_if_any()
        return self._sessions.existing(current_user(), notebook_id)


def _has_cells(notebook: notebook_pb2.Notebook, cell_ids: Iterable[str]) -> bool:
    known = {cell.id for cell in notebook.cells}
    return all(cell_id in known for cell_id in cell_ids)


def _page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"kernels:{offset}".encode()).decode()


def _page_start(token: str, check: Violations) -> int:
    if not token:
        return 0
    try:
        prefix, _, offset = base64.urlsafe_b64decode(token).decode().partition(":")
        if prefix == "kernels" and offset.isdigit():
            return int(offset)
    except (ValueError, UnicodeDecodeError):
        pass
    check.add("page_token", "is not a token from a previous response")
    return 0
