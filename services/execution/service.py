"""The execution service's gRPC edge: validate, find the session, stream."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from reflow.execution.v1 import execution_pb2, execution_pb2_grpc
from services.execution.runs import RunRequest
from services.shared.auth import current_token, current_user
from services.shared.dataflow import CellId
from services.shared.errors import InvalidArgument
from services.shared.validation import Violations

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import grpc

    from services.execution.clients import NotebookClient
    from services.execution.session import Session
    from services.execution.sessions import SessionManager

    Context = grpc.aio.ServicerContext[object, object]

_MAX_PAGE = 100


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
        check.raise_if_any()
        token = current_token()
        notebook = await self._notebooks.get_notebook(token, request.notebook_id)
        known = {cell.id for cell in notebook.cells}
        unknown = [c for c in request.cell_ids if c not in known]
        if unknown:
            raise InvalidArgument(
                f"notebook {request.notebook_id!r} has no cell {unknown[0]!r}",
                field_violations=[("cell_ids", f"unknown cell {unknown[0]!r}")],
            )
        database_url = ""
        if notebook.database_url:
            database_url = await self._notebooks.get_database_url(
                token, request.notebook_id
            )
        session = self._sessions.session(current_user(), request.notebook_id)
        run = RunRequest(
            cells=frozenset(CellId(c) for c in request.cell_ids),
            notebook=notebook,
            database_url=database_url,
            stale=not request.cell_ids,
        )
        async for event in session.run(run):
            yield execution_pb2.RunCellsResponse(event=event)

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

    def _describe(self, session: Session) -> execution_pb2.Kernel:
        kernel = session.describe()
        kernel.replica_id = self.replica_id
        return kernel

    def _existing(self, notebook_id: str) -> Session:
        check = Violations()
        check.identifier("notebook_id", notebook_id)
        check.raise_if_any()
        return self._sessions.existing(current_user(), notebook_id)


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
