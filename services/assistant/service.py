"""The assistant's gRPC edge: validate, hand the turn to the loop, convert."""

from __future__ import annotations

from contextlib import aclosing
from typing import TYPE_CHECKING

from reflow.assistant.v1 import assistant_pb2, assistant_pb2_grpc
from services.assistant import convert
from services.assistant.conversation import TurnRequest
from services.shared.auth import current_user
from services.shared.validation import Violations, page_size

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import grpc

    from services.assistant.conversation import Assistant
    from services.assistant.store import ConversationStore

    Context = grpc.aio.ServicerContext[object, object]


class AssistantServicer(assistant_pb2_grpc.AssistantServiceServicer):
    """Chat, and the caller's conversations."""

    def __init__(
        self, assistant: Assistant, store: ConversationStore, max_message_bytes: int
    ) -> None:
        self._assistant = assistant
        self._store = store
        self._max_message_bytes = max_message_bytes

    async def Chat(
        self, request: assistant_pb2.ChatRequest, context: Context
    ) -> AsyncIterator[assistant_pb2.ChatResponse]:
        check = Violations()
        check.identifier("notebook_id", request.notebook_id)
        if not request.message.strip():
            check.add("message", "is required")
        check.code("message", request.message, self._max_message_bytes)
        if request.conversation_id:
            check.identifier("conversation_id", request.conversation_id)
        check.raise_if_any()
        turn = TurnRequest(
            user=current_user(),
            notebook_id=request.notebook_id,
            message=request.message,
            conversation_id=request.conversation_id,
            restrict_tools=request.restrict_tools,
        )
        async with aclosing(self._assistant.chat(turn)) as events:
            async for event in events:
                yield convert.event_to_proto(event)

    async def ListConversations(
        self, request: assistant_pb2.ListConversationsRequest, context: Context
    ) -> assistant_pb2.ListConversationsResponse:
        check = Violations()
        check.identifier("notebook_id", request.notebook_id)
        size = page_size(request.page_size, check)
        check.raise_if_any()
        summaries, token = await self._store.list(
            current_user(), request.notebook_id, size, request.page_token
        )
        return assistant_pb2.ListConversationsResponse(
            conversations=[convert.summary_to_proto(s) for s in summaries],
            next_page_token=token,
        )

    async def GetConversation(
        self, request: assistant_pb2.GetConversationRequest, context: Context
    ) -> assistant_pb2.GetConversationResponse:
        check = Violations()
        check.identifier("conversation_id", request.conversation_id)
        check.raise_if_any()
        conversation = await self._store.get(current_user(), request.conversation_id)
        return assistant_pb2.GetConversationResponse(
            conversation=convert.conversation_to_proto(conversation)
        )
