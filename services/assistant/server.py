"""Wiring of the assistant service's gRPC server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reflow.assistant.v1 import assistant_pb2, assistant_pb2_grpc
from services.assistant.service import AssistantServicer
from services.shared.grpc_server import create_server

if TYPE_CHECKING:
    import grpc

    from services.assistant.conversation import Assistant
    from services.assistant.store import ConversationStore
    from services.shared.auth import TokenVerifier

SERVICE_NAMES = (
    assistant_pb2.DESCRIPTOR.services_by_name["AssistantService"].full_name,
)


def build_server(
    assistant: Assistant,
    store: ConversationStore,
    address: str,
    verifier: TokenVerifier,
    max_message_bytes: int = 32 * 1024,
) -> tuple[grpc.aio.Server, int]:
    """Build (unstarted) and bind the assistant service's server."""
    servicer = AssistantServicer(assistant, store, max_message_bytes)
    return create_server(
        [
            lambda s: assistant_pb2_grpc.add_AssistantServiceServicer_to_server(
                servicer, s
            )
        ],
        address,
        SERVICE_NAMES,
        token_verifier=verifier,
    )
