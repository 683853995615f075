"""The notebook and execution calls the assistant's tools make.

Every call acts for the user of the turn: it carries an internal token naming
them (minted per call by ``UserTokens``, so a long turn never sends an
expired one) and the ``x-reflow-notebook-id`` routing header, has a deadline,
and fails with the shared domain errors (``NotFound`` ...), which the tools
hand back to the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reflow.execution.v1 import execution_pb2, execution_pb2_grpc
from reflow.notebook.v1 import notebook_pb2, notebook_pb2_grpc
from services.shared.grpc_client import (
    DEFAULT_TIMEOUT_S,
    notebook_metadata,
    rpc_errors_as_service_errors,
)
from services.shared.interceptor import current_request_id

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import grpc

    from services.shared.auth import InternalTokens

Metadata = tuple[tuple[str, str], ...]


class UserTokens:
    """Internal tokens for one user, minted fresh for every call."""

    def __init__(self, tokens: InternalTokens, user: str) -> None:
        self._tokens = tokens
        self.user = user

    def metadata(self, notebook_id: str) -> Metadata:
        token = self._tokens.token_for(self.user, current_request_id())
        return notebook_metadata(token, notebook_id)


class NotebookClient:
    """Reads and edits notebooks on the notebook service."""

    def __init__(
        self, channel: grpc.aio.Channel, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self._stub = notebook_pb2_grpc.NotebookServiceStub(channel)
        self._timeout_s = timeout_s

    async def get_notebook(
        self, who: UserTokens, notebook_id: str
    ) -> notebook_pb2.Notebook:
        async with rpc_errors_as_service_errors("notebook"):
            reply = await self._stub.GetNotebook(
                notebook_pb2.GetNotebookRequest(notebook_id=notebook_id),
                metadata=who.metadata(notebook_id),
                timeout=self._timeout_s,
            )
        return reply.notebook

    async def create_cell(
        self, who: UserTokens, request: notebook_pb2.CreateCellRequest
    ) -> notebook_pb2.CreateCellResponse:
        async with rpc_errors_as_service_errors("notebook"):
            return await self._stub.CreateCell(
                request,
                metadata=who.metadata(request.notebook_id),
                timeout=self._timeout_s,
            )

    async def update_cell(
        self, who: UserTokens, request: notebook_pb2.UpdateCellRequest
    ) -> notebook_pb2.UpdateCellResponse:
        async with rpc_errors_as_service_errors("notebook"):
            return await self._stub.UpdateCell(
                request,
                metadata=who.metadata(request.notebook_id),
                timeout=self._timeout_s,
            )

    async def move_cell(
        self, who: UserTokens, request: notebook_pb2.MoveCellRequest
    ) -> notebook_pb2.MoveCellResponse:
        async with rpc_errors_as_service_errors("notebook"):
            return await self._stub.MoveCell(
                request,
                metadata=who.metadata(request.notebook_id),
                timeout=self._timeout_s,
            )

    async def delete_cell(
        self, who: UserTokens, request: notebook_pb2.DeleteCellRequest
    ) -> notebook_pb2.DeleteCellResponse:
        async with rpc_errors_as_service_errors("notebook"):
            return await self._stub.DeleteCell(
                request,
                metadata=who.metadata(request.notebook_id),
                timeout=self._timeout_s,
            )


class ExecutionClient:
    """Runs and interrupts cells on the execution service."""

    def __init__(
        self, channel: grpc.aio.Channel, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self._stub = execution_pb2_grpc.ExecutionServiceStub(channel)
        self._timeout_s = timeout_s

    async def run_cells(
        self, who: UserTokens, notebook_id: str, cell_ids: list[str]
    ) -> AsyncIterator[execution_pb2.ExecutionEvent]:
        """The run's events until it ends. No deadline of its own: the turn's
        deadline bounds it, and leaving early cancels the call."""
        call = self._stub.RunCells(
            execution_pb2.RunCellsRequest(notebook_id=notebook_id, cell_ids=cell_ids),
            metadata=who.metadata(notebook_id),
        )
        try:
            async with rpc_errors_as_service_errors("execution"):
                async for reply in call:
                    yield reply.event
        finally:
            call.cancel()

    async def interrupt(self, who: UserTokens, notebook_id: str) -> bool:
        """Interrupt the running cell; False when nothing was running."""
        async with rpc_errors_as_service_errors("execution"):
            reply = await self._stub.InterruptKernel(
                execution_pb2.InterruptKernelRequest(notebook_id=notebook_id),
                metadata=who.metadata(notebook_id),
                timeout=self._timeout_s,
            )
        return reply.interrupted
