"""The JSON document of a conversation, as the local store writes it.

A document carries a ``"format"`` number so that a later layout can be told
apart from this one. Times are ISO-8601 in UTC, roles by their value.
Decoding trusts nothing: a document of another shape raises DocumentError.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from services.assistant.models import Conversation, Message, Role, ToolCall

FORMAT: Final = 1


class DocumentError(ValueError):
    """A stored document that does not have the shape this module writes."""


def conversation_to_document(conversation: Conversation) -> dict[str, Any]:
    """The JSON-able document of a conversation."""
    return {
        "format": FORMAT,
        "id": conversation.id,
        "notebook_id": conversation.notebook_id,
        "owner": conversation.owner,
        "title": conversation.title,
        "create_time": time_to_text(conversation.create_time),
        "update_time": time_to_text(conversation.update_time),
        "messages": [_message_to_document(m) for m in conversation.messages],
    }


def conversation_from_document(document: object) -> Conversation:
    """The conversation a document describes; DocumentError if it is not one."""
    fields = _mapping(document, "document")
    if fields.get("format") != FORMAT:
        raise DocumentError(f"format is {fields.get('format')!r}, expected {FORMAT}")
    messages = fields.get("messages")
    if not isinstance(messages, list):
        raise DocumentError("messages is not an array")
    return Conversation(
        id=_text(fields, "id"),
        notebook_id=_text(fields, "notebook_id"),
        owner=_text(fields, "owner"),
        title=_text(fields, "title"),
        create_time=time_from_text(_text(fields, "create_time")),
        update_time=time_from_text(_text(fields, "update_time")),
        messages=tuple(_message_from_document(m) for m in messages),
    )


def time_to_text(moment: datetime) -> str:
    """An aware datetime as ISO-8601 in UTC."""
    if moment.tzinfo is None:
        raise ValueError(f"datetime {moment!r} has no time zone")
    return moment.astimezone(UTC).isoformat()


def time_from_text(text: str) -> datetime:
    """Parse what time_to_text wrote; DocumentError otherwise."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise DocumentError(f"{text!r} is not an ISO-8601 datetime") from None
    if moment.tzinfo is None:
        raise DocumentError(f"{text!r} has no time zone")
    return moment.astimezone(UTC)


def _message_to_document(message: Message) -> dict[str, Any]:
    return {
        "role": message.role.value,
        "text": message.text,
        "tool_calls": [
            {"id": c.id, "name": c.name, "arguments": c.arguments_json}
            for c in message.tool_calls
        ],
        "tool_call_id": message.tool_call_id,
        "create_time": time_to_text(message.create_time),
    }


def _message_from_document(document: object) -> Message:
    fields = _mapping(document, "message")
    try:
        role = Role(_text(fields, "role"))
    except ValueError:
        raise DocumentError(f"unknown role {fields.get('role')!r}") from None
    calls = fields.get("tool_calls")
    if not isinstance(calls, list):
        raise DocumentError("message.tool_calls is not an array")
    return Message(
        role=role,
        text=_text(fields, "text"),
        tool_calls=tuple(
            ToolCall(
                _text(call, "id"),
                _text(call, "name"),
                _text(call, "arguments"),
            )
            for call in (_mapping(c, "tool call") for c in calls)
        ),
        tool_call_id=_text(fields, "tool_call_id"),
        create_time=time_from_text(_text(fields, "create_time")),
    )


def _mapping(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DocumentError(f"{where} is not an object")
    return value


def _text(fields: dict[str, Any], key: str) -> str:
    value = fields.get(key)
    if not isinstance(value, str):
        raise DocumentError(f"{key} is not a string")
    return value
