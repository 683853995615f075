"""Wiring of the execution service's gRPC server."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from reflow.execution.v1 import execution_pb2, execution_pb2_grpc
from services.execution.service import ExecutionServicer
from services.shared.grpc_server import create_server

if TYPE_CHECKING:
    import grpc

    from services.execution.clients import NotebookClient
    from services.execution.sessions import SessionManager
    from services.shared.auth import TokenVerifier

SERVICE_NAMES = (
    execution_pb2.DESCRIPTOR.services_by_name["ExecutionService"].full_name,
)


def build_server(
    sessions: SessionManager,
    notebooks: NotebookClient,
    address: str,
    verifier: TokenVerifier,
    replica_id: str = "",
) -> tuple[grpc.aio.Server, int]:
    """Build (unstarted) and bind the execution service's server.

    ``replica_id`` names this replica in GetKernel and ListKernels; empty
    means the host name and the port it bound.
    """
    servicer = ExecutionServicer(sessions, notebooks)
    server, port = create_server(
        [
            lambda s: execution_pb2_grpc.add_ExecutionServiceServicer_to_server(
                servicer, s
            )
        ],
        address,
        SERVICE_NAMES,
        token_verifier=verifier,
    )
    servicer.replica_id = replica_id or f"{socket.gethostname()}:{port}"
    return server, port
