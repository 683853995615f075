"""The notebook-service calls the execution service makes.

Each names its notebook in the ``x-reflow-notebook-id`` header, as the
gateway's and the assistant's calls do, so that with notebook replicas
behind Envoy a notebook's reads, results and watch reach the replica the
ring gives it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reflow.notebook.v1 import notebook_pb2, notebook_pb2_grpc
from services.shared.grpc_client import (
    DEFAULT_TIMEOUT_S,
    notebook_metadata,
    rpc_errors_as_service_errors,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import grpc


class NotebookClient:
    """Reads notebooks and records results, as the user whose token it gets."""

    def __init__(
        self, channel: grpc.aio.Channel, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self._public = notebook_pb2_grpc.NotebookServiceStub(channel)
        self._internal = notebook_pb2_grpc.NotebookInternalServiceStub(channel)
        self._timeout_s = timeout_s

    async def get_notebook(self, token: str, notebook_id: str) -> notebook_pb2.Notebook:
        """The notebook with its cells (NotFound for a foreign one)."""
        async with rpc_errors_as_service_errors("notebook"):
            reply = await self._public.GetNotebook(
                notebook_pb2.GetNotebookRequest(notebook_id=notebook_id),
                metadata=notebook_metadata(token, notebook_id),
                timeout=self._timeout_s,
            )
        return reply.notebook

    async def get_database_url(self, token: str, notebook_id: str) -> str:
        """The notebook's database URL, password included."""
        async with rpc_errors_as_service_errors("notebook"):
            reply = await self._internal.GetDatabaseConnection(
                notebook_pb2.GetDatabaseConnectionRequest(notebook_id=notebook_id),
                metadata=notebook_metadata(token, notebook_id),
                timeout=self._timeout_s,
            )
        return reply.database_url

    async def record_result(
        self,
        token: str,
        notebook_id: str,
        cell_id: str,
        result: notebook_pb2.CellResult,
    ) -> None:
        """Persist a cell's result on the notebook service."""
        async with rpc_errors_as_service_errors("notebook"):
            await self._internal.RecordCellResult(
                notebook_pb2.RecordCellResultRequest(
                    notebook_id=notebook_id, cell_id=cell_id, result=result
                ),
                metadata=notebook_metadata(token, notebook_id),
                timeout=self._timeout_s,
            )

    async def watch_notebook(
        self, token: str, notebook_id: str
    ) -> AsyncIterator[notebook_pb2.WatchNotebookResponse]:
        """The notebook's changes, from a snapshot on, until it is deleted."""
        call = self._public.WatchNotebook(
            notebook_pb2.WatchNotebookRequest(notebook_id=notebook_id),
            metadata=notebook_metadata(token, notebook_id),
        )
        try:
            async with rpc_errors_as_service_errors("notebook"):
                async for response in call:
                    yield response
        finally:
            call.cancel()
