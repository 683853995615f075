"""The loop on its own: a ScriptedChatModel instead of an HTTP server, the real
notebook service behind the tools, events read straight from Assistant.chat."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from services.assistant.audit import AuditLog
from services.assistant.clients import ExecutionClient, NotebookClient
from services.assistant.config import ToolLimits, TurnLimits
from services.assistant.conversation import Assistant, TurnRequest
from services.assistant.errors import ConversationOfAnotherNotebook
from services.assistant.llm import ModelError, ScriptedChatModel, ScriptedReply
from services.assistant.models import (
    ChatDone,
    ChatError,
    ChatEvent,
    Role,
    TextDelta,
    ToolCall,
    ToolCallFinished,
)
from services.assistant.store.memory import MemoryConversationStore

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from tests.execution.conftest import Stack

READ = ToolCall("c1", "read_notebook", "{}")


def assistant_for(stack: Stack, model: ScriptedChatModel, tmp_path: Path) -> Assistant:
    return Assistant(
        model=model,
        store=MemoryConversationStore(),
        notebooks=NotebookClient(stack.notebook_channel),
        execution=ExecutionClient(stack.execution_channel),
        tokens=stack.tokens,
        audit=AuditLog(tmp_path / "audit.log"),
        limits=TurnLimits(),
        tool_limits=ToolLimits(),
    )


async def turn(
    assistant: Assistant,
    notebook_id: str,
    message: str = "hi",
    conversation_id: str = "",
    restrict_tools: bool = False,
) -> list[ChatEvent]:
    request = TurnRequest(
        "alice", notebook_id, message, conversation_id, restrict_tools
    )
    return [event async for event in assistant.chat(request)]


def of_type(events: Sequence[ChatEvent], kind: type[object]) -> list[object]:
    return [event for event in events if isinstance(event, kind)]


async def test_scripted_turn_reads_the_notebook_then_answers(
    stack: Stack, tmp_path: Path
) -> None:
    notebook_id, cell_id = await stack.notebook("x = 1")
    model = ScriptedChatModel(
        [ScriptedReply(tool_calls=(READ,)), ScriptedReply("One cell.")]
    )

    events = await turn(assistant_for(stack, model, tmp_path), notebook_id)

    (finished,) = of_type(events, ToolCallFinished)
    assert finished == ToolCallFinished(
        "c1", "read_notebook", True, "read 1 of 1 cells"
    )
    result = model.requests[1].messages[-1]
    assert result.role is Role.TOOL
    assert json.loads(result.text)["cells"][0]["id"] == cell_id
    assert isinstance(events[-1], ChatDone)


async def test_text_streams_as_deltas(stack: Stack, tmp_path: Path) -> None:
    (notebook_id,) = await stack.notebook()
    model = ScriptedChatModel([ScriptedReply("It is empty.")])

    events = await turn(assistant_for(stack, model, tmp_path), notebook_id)

    assert of_type(events, TextDelta) == [
        TextDelta("It "),
        TextDelta("is "),
        TextDelta("empty."),
    ]


async def test_model_error_ends_the_turn_with_its_code(
    stack: Stack, tmp_path: Path
) -> None:
    (notebook_id,) = await stack.notebook()
    failure = ModelError("RESOURCE_EXHAUSTED", "the model is rate-limited")
    model = ScriptedChatModel([ScriptedReply("Let me", error=failure)])

    events = await turn(assistant_for(stack, model, tmp_path), notebook_id)

    assert events[-1] == ChatError("RESOURCE_EXHAUSTED", "the model is rate-limited")


async def test_restricted_turn_says_so_in_the_system_prompt(
    stack: Stack, tmp_path: Path
) -> None:
    (notebook_id,) = await stack.notebook()
    model = ScriptedChatModel([ScriptedReply("ok")])

    await turn(assistant_for(stack, model, tmp_path), notebook_id, restrict_tools=True)

    assert "not run code" in model.requests[0].system


async def test_conversation_of_another_notebook_is_refused(
    stack: Stack, tmp_path: Path
) -> None:
    (first,) = await stack.notebook()
    (second,) = await stack.notebook()
    model = ScriptedChatModel([ScriptedReply("ok")])
    assistant = assistant_for(stack, model, tmp_path)
    events = await turn(assistant, first)
    conversation_id = events[0].conversation_id  # type: ignore[union-attr]

    with pytest.raises(ConversationOfAnotherNotebook):
        await turn(assistant, second, conversation_id=conversation_id)
