"""Fixtures for the assistant: the real notebook and execution services with
real kernels (tests/execution's ``stack``), a scripted OpenAI-compatible
server on loopback, and the assistant service on port 0 between them, talking
to that server through the real openai client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeAlias

import grpc
import pytest

from reflow.assistant.v1 import assistant_pb2, assistant_pb2_grpc
from services.assistant.audit import AuditLog
from services.assistant.clients import ExecutionClient, NotebookClient
from services.assistant.config import ModelSettings, ToolLimits, TurnLimits
from services.assistant.conversation import Assistant
from services.assistant.llm import OpenAIChatModel
from services.assistant.server import build_server
from services.assistant.store.memory import MemoryConversationStore
from tests.assistant.model_server import ScriptedModelServer
from tests.execution.conftest import kernel_settings, stack  # noqa: F401  (fixtures)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from pathlib import Path

    from services.assistant.llm import ChatModel
    from tests.execution.conftest import Stack

API_KEY: Final = "sk-assistant-tests-0123456789abcdef"
AssistantStub: TypeAlias = "assistant_pb2_grpc.AssistantServiceAsyncStub"
Metadata: TypeAlias = tuple[tuple[str, str], ...]


@dataclass
class ChatClient:
    """A running assistant service and what tests need around it."""

    stub: AssistantStub
    stack: Stack
    model: ScriptedModelServer
    store: MemoryConversationStore
    audit_log: Path

    def metadata(self, user: str = "alice") -> Metadata:
        return self.stack.metadata(user)

    def request(
        self,
        notebook_id: str,
        message: str,
        conversation_id: str = "",
        restrict_tools: bool = False,
    ) -> assistant_pb2.ChatRequest:
        return assistant_pb2.ChatRequest(
            notebook_id=notebook_id,
            message=message,
            conversation_id=conversation_id,
            restrict_tools=restrict_tools,
        )

    async def send(
        self,
        notebook_id: str,
        message: str,
        conversation_id: str = "",
        restrict_tools: bool = False,
        user: str = "alice",
    ) -> list[assistant_pb2.ChatResponse]:
        """One turn, all its events."""
        call = self.stub.Chat(
            self.request(notebook_id, message, conversation_id, restrict_tools),
            metadata=self.metadata(user),
            timeout=60,
        )
        return [response async for response in call]


def kinds(responses: Sequence[assistant_pb2.ChatResponse]) -> list[str]:
    """The kind of each event: conversation_started, text_delta, ..."""
    return [str(response.WhichOneof("event")) for response in responses]


def text_of(responses: Sequence[assistant_pb2.ChatResponse]) -> str:
    return "".join(r.text_delta.text for r in responses if r.HasField("text_delta"))


def finished_calls(
    responses: Sequence[assistant_pb2.ChatResponse],
) -> list[assistant_pb2.ToolCallFinished]:
    return [r.tool_call_finished for r in responses if r.HasField("tool_call_finished")]


def started_calls(
    responses: Sequence[assistant_pb2.ChatResponse],
) -> list[assistant_pb2.ToolCall]:
    return [
        r.tool_call_started.call for r in responses if r.HasField("tool_call_started")
    ]


@pytest.fixture
def turn_limits(request: pytest.FixtureRequest) -> TurnLimits:
    """Default turn limits, or what a test passes with indirect parametrize."""
    limits: TurnLimits = getattr(request, "param", TurnLimits(deadline_s=60.0))
    return limits


@pytest.fixture
async def model_server() -> AsyncIterator[ScriptedModelServer]:
    server = ScriptedModelServer()
    await server.start()
    yield server
    await server.close()


async def serve_assistant(
    services: Stack,
    model: ChatModel | None,
    store: MemoryConversationStore,
    audit_log: Path,
    limits: TurnLimits,
) -> tuple[grpc.aio.Server, int]:
    """The assistant service on a free port, started, on ``services``."""
    assistant = Assistant(
        model=model,
        store=store,
        notebooks=NotebookClient(services.notebook_channel),
        execution=ExecutionClient(services.execution_channel),
        tokens=services.tokens,
        audit=AuditLog(audit_log),
        limits=limits,
        tool_limits=ToolLimits(),
    )
    server, port = build_server(assistant, store, "127.0.0.1:0", services.tokens)
    await server.start()
    return server, port


@pytest.fixture
async def chat(
    stack: Stack,  # noqa: F811  (the imported fixture)
    model_server: ScriptedModelServer,
    turn_limits: TurnLimits,
    tmp_path: Path,
) -> AsyncIterator[ChatClient]:
    settings = ModelSettings(
        api_key=API_KEY,
        base_url=model_server.url,
        model="scripted-model",
        read_timeout_s=10.0,
    )
    model = OpenAIChatModel(settings)
    store = MemoryConversationStore()
    audit_log = tmp_path / "audit.log"
    server, port = await serve_assistant(stack, model, store, audit_log, turn_limits)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = assistant_pb2_grpc.AssistantServiceStub(channel)
            yield ChatClient(stub, stack, model_server, store, audit_log)
    finally:
        await server.stop(None)
        await model.close()
