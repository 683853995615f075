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
        return (await self.get_notebook_and_files(token, notebook_id, False)).notebook

    async def get_notebook_and_files(
        self, token: str, notebook_id: str, include_files: bool = True
    ) -> notebook_pb2.GetNotebookResponse:
        """The notebook with its cells, and the listing of its files."""
        async with rpc_errors_as_service_errors("notebook"):
            return await self._public.GetNotebook(
                notebook_pb2.GetNotebookRequest(
                    notebook_id=notebook_id, include_files=include_files
                ),
                metadata=notebook_metadata(token, notebook_id),
                timeout=self._timeout_s,
            )

    async def record_results(
        self,
        token: str,
        notebook_id: str,
        results: list[tuple[str, notebook_pb2.CellResult]],
    ) -> None:
        """Persist several cells' results of one notebook in one call."""
        async with rpc_errors_as_service_errors("notebook"):
            await self._internal.RecordCellResults(
                notebook_pb2.RecordCellResultsRequest(
                    notebook_id=notebook_id,
                    results=[
                        notebook_pb2.RecordedCellResult(cell_id=c, result=r)
                        for c, r in results
                    ],
                ),
                metadata=notebook_metadata(token, notebook_id),
                timeout=self._timeout_s,
            )

    async def get_database_url(self, token: str, notebook_id: str) -> str:
        """The notebook's database URL, password included."""
        async with rpc_errors_as_service_errors("notebook"):
            reply = await self._internal.GetDatabaseConnection(
                notebook_pb2.GetDatabaseConnectionRequest(notebook_id=notebook_id),
                metadata=notebook_metadata(token, notebook_id),
                timeout=self._timeout_s,
            )
        return reply.database_url

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

    async def list_files(
        self, token: str, notebook_id: str
    ) -> notebook_pb2.ListFilesResponse:
        """The notebook's files (without content) and the size limits."""
        async with rpc_errors_as_service_errors("notebook"):
            return await self._public.ListFiles(
                notebook_pb2.ListFilesRequest(notebook_id=notebook_id),
                metadata=notebook_metadata(token, notebook_id),
                timeout=self._timeout_s,
            )

    async def get_file(
        self, token: str, notebook_id: str, path: str
    ) -> notebook_pb2.GetFileResponse:
        """One file of the notebook, with its content."""
        async with rpc_errors_as_service_errors("notebook"):
            return await self._public.GetFile(
                notebook_pb2.GetFileRequest(notebook_id=notebook_id, path=path),
                metadata=notebook_metadata(token, notebook_id),
                timeout=self._timeout_s,
            )

    async def put_file(
        self, token: str, notebook_id: str, path: str, content: bytes
    ) -> notebook_pb2.NotebookFile:
        """Store a file as the notebook's; the notebook service checks it."""
        async with rpc_errors_as_service_errors("notebook"):
            reply = await self._public.PutFile(
                notebook_pb2.PutFileRequest(
                    notebook_id=notebook_id, path=path, content=content
                ),
                metadata=notebook_metadata(token, notebook_id),
                timeout=self._timeout_s,
            )
        return reply.file

    async def delete_file(self, token: str, notebook_id: str, path: str) -> None:
        """Delete one file of the notebook."""
        async with rpc_errors_as_service_errors("notebook"):
            await self._public.DeleteFile(
                notebook_pb2.DeleteFileRequest(notebook_id=notebook_id, path=path),
                metadata=notebook_metadata(token, notebook_id),
                timeout=self._timeout_s,
            )
