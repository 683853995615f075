"""Domain ⇄ proto for the assistant: conversations, messages, a turn's events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from google.protobuf import timestamp_pb2

from reflow.assistant.v1 import assistant_pb2
from services.assistant.models import (
    ChatDone,
    ChatError,
    ConversationStarted,
    Role,
    StopReason,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
)

if TYPE_CHECKING:
    from datetime import datetime

    from services.assistant.models import (
        ChatEvent,
        Conversation,
        ConversationSummary,
        Message,
        ToolCall,
        Usage,
    )

_ROLES: Final = {
    Role.USER: assistant_pb2.ROLE_USER,
    Role.ASSISTANT: assistant_pb2.ROLE_ASSISTANT,
    Role.TOOL: assistant_pb2.ROLE_TOOL,
}

_STOP_REASONS: Final = {
    StopReason.COMPLETED: assistant_pb2.STOP_REASON_COMPLETED,
    StopReason.TOOL_ROUNDS_EXHAUSTED: assistant_pb2.STOP_REASON_TOOL_ROUNDS_EXHAUSTED,
}


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def summary_to_proto(summary: ConversationSummary) -> assistant_pb2.Conversation:
    """A conversation without its messages."""
    return assistant_pb2.Conversation(
        id=summary.id,
        notebook_id=summary.notebook_id,
        owner=summary.owner,
        title=summary.title,
        create_time=timestamp(summary.create_time),
        update_time=timestamp(summary.update_time),
    )


def conversation_to_proto(conversation: Conversation) -> assistant_pb2.Conversation:
    """A conversation with its messages."""
    message = summary_to_proto(conversation.summary())
    message.messages.extend(message_to_proto(m) for m in conversation.messages)
    return message


def message_to_proto(message: Message) -> assistant_pb2.Message:
    return assistant_pb2.Message(
        role=_ROLES[message.role],
        text=message.text,
        tool_calls=[tool_call_to_proto(c) for c in message.tool_calls],
        tool_call_id=message.tool_call_id,
        create_time=timestamp(message.create_time),
    )


def tool_call_to_proto(call: ToolCall) -> assistant_pb2.ToolCall:
    return assistant_pb2.ToolCall(
        id=call.id, name=call.name, arguments_json=call.arguments_json
    )


def usage_to_proto(usage: Usage) -> assistant_pb2.Usage:
    return assistant_pb2.Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


def event_to_proto(event: ChatEvent) -> assistant_pb2.ChatResponse:
    """One event of a turn as the ChatResponse that streams it."""
    if isinstance(event, ConversationStarted):
        return assistant_pb2.ChatResponse(
            conversation_started=assistant_pb2.ConversationStarted(
                conversation_id=event.conversation_id
            )
        )
    if isinstance(event, TextDelta):
        return assistant_pb2.ChatResponse(
            text_delta=assistant_pb2.TextDelta(text=event.text)
        )
    if isinstance(event, ToolCallStarted):
        return assistant_pb2.ChatResponse(
            tool_call_started=assistant_pb2.ToolCallStarted(
                call=tool_call_to_proto(event.call)
            )
        )
    if isinstance(event, ToolCallFinished):
        return assistant_pb2.ChatResponse(
            tool_call_finished=assistant_pb2.ToolCallFinished(
                call_id=event.call_id,
                name=event.name,
                ok=event.ok,
                summary=event.summary,
                error_code=event.error_code,
            )
        )
    if isinstance(event, ChatDone):
        return assistant_pb2.ChatResponse(
            done=assistant_pb2.ChatDone(
                usage=usage_to_proto(event.usage),
                tool_rounds=event.tool_rounds,
                stop_reason=_STOP_REASONS[event.stop_reason],
            )
        )
    if isinstance(event, ChatError):
        return assistant_pb2.ChatResponse(
            error=assistant_pb2.ChatError(code=event.code, message=event.message)
        )
    raise TypeError(f"not a chat event: {event!r}")
