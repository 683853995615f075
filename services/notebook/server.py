"""Wiring of the notebook service's gRPC server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reflow.notebook.v1 import notebook_pb2, notebook_pb2_grpc
from services.notebook.files.memory import MemoryFileStore
from services.notebook.service import NotebookInternalServicer, NotebookServicer
from services.shared.grpc_server import create_server

if TYPE_CHECKING:
    import grpc

    from services.notebook.feed import RedisChangeFeed
    from services.notebook.files import FileStore
    from services.notebook.manager import NotebookManager
    from services.shared.auth import TokenVerifier

SERVICE_NAMES = (
    notebook_pb2.DESCRIPTOR.services_by_name["NotebookService"].full_name,
    notebook_pb2.DESCRIPTOR.services_by_name["NotebookInternalService"].full_name,
)


def build_server(
    manager: NotebookManager,
    address: str,
    verifier: TokenVerifier,
    max_code_bytes: int = 1024 * 1024,
    files: FileStore | None = None,
    feed: RedisChangeFeed | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Build (unstarted) and bind the notebook service's server (files in
    memory unless a store is given; watches fed by ``feed`` when replicas
    share one, else by the manager's own hub)."""
    public = NotebookServicer(manager, max_code_bytes, files or MemoryFileStore(), feed)
    internal = NotebookInternalServicer(manager)
    return create_server(
        [
            lambda s: notebook_pb2_grpc.add_NotebookServiceServicer_to_server(
                public, s
            ),
            lambda s: notebook_pb2_grpc.add_NotebookInternalServiceServicer_to_server(
                internal, s
            ),
        ],
        address,
        SERVICE_NAMES,
        token_verifier=verifier,
    )
