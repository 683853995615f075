"""The assistant's domain: conversations, their messages, and a turn's events.

Plain frozen dataclasses, free of protobuf and of ``openai``: the store keeps
them, the loop (conversation.py) produces them, convert.py turns them into
the wire messages and llm.py into the model's.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeAlias


def now() -> datetime:
    """The current time, in UTC."""
    return datetime.now(UTC)


class Role(enum.Enum):
    """Who wrote a message (the values are the Chat Completions role names)."""

    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


@dataclass(frozen=True)
class ToolCall:
    """A tool call the model made: its id, the tool, the arguments as JSON."""

    id: str
    name: str
    arguments_json: str


@dataclass(frozen=True)
class Message:
    """One message of a conversation."""

    role: Role
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    # For a tool message: the call it answers.
    tool_call_id: str = ""
    create_time: datetime = field(default_factory=now)


@dataclass(frozen=True)
class ConversationSummary:
    """A conversation without its messages, as listings show it."""

    id: str
    notebook_id: str
    owner: str
    title: str
    create_time: datetime
    update_time: datetime


@dataclass(frozen=True)
class Conversation:
    """A user's conversation with the assistant about one notebook."""

    id: str
    notebook_id: str
    owner: str
    title: str
    create_time: datetime
    update_time: datetime
    messages: tuple[Message, ...] = ()

    def summary(self) -> ConversationSummary:
        return ConversationSummary(
            self.id,
            self.notebook_id,
            self.owner,
            self.title,
            self.create_time,
            self.update_time,
        )


@dataclass(frozen=True)
class Usage:
    """Token counts, summed over a turn's model requests."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
        )


class StopReason(enum.Enum):
    """Why a turn ended normally."""

    COMPLETED = "completed"
    TOOL_ROUNDS_EXHAUSTED = "tool_rounds_exhausted"


# --- the events of a turn, in the order Chat streams them


@dataclass(frozen=True)
class ConversationStarted:
    conversation_id: str


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallStarted:
    # The arguments as validated (the model's own text when they were not).
    call: ToolCall


@dataclass(frozen=True)
class ToolCallFinished:
    call_id: str
    name: str
    ok: bool
    summary: str
    error_code: str = ""


@dataclass(frozen=True)
class ChatDone:
    usage: Usage
    tool_rounds: int
    stop_reason: StopReason


@dataclass(frozen=True)
class ChatError:
    # A gRPC status code name: UNAVAILABLE, DEADLINE_EXCEEDED, ...
    code: str
    message: str


ChatEvent: TypeAlias = (
    ConversationStarted
    | TextDelta
    | ToolCallStarted
    | ToolCallFinished
    | ChatDone
    | ChatError
)
