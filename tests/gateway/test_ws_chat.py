"""The WebSocket ``chat`` command: Chat's events relayed to the socket, then a reply."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from reflow.assistant.v1 import assistant_pb2_grpc
from services.gateway.app import create_app
from services.gateway.clients import Downstreams
from services.gateway.server import build_grpc_server
from services.shared.grpc_server import create_server
from tests.gateway.conftest import Gateway, receive, receive_until, serving_http
from tests.gateway.fakes import FakeAssistant

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from websockets.asyncio.client import ClientConnection

    from services.gateway.auth import Identity
    from services.gateway.config import WebSocketSettings
    from tests.gateway.conftest import Backends


@pytest.fixture
async def assistant() -> FakeAssistant:
    return FakeAssistant()


@pytest.fixture
async def chat_gateway(
    backends: Backends,
    identity: Identity,
    ws_settings: WebSocketSettings,
    assistant: FakeAssistant,
) -> AsyncIterator[Gateway]:
    """A gateway whose WebSocket bridge also reaches a (fake) assistant."""
    server, port = create_server(
        [
            lambda s: assistant_pb2_grpc.add_AssistantServiceServicer_to_server(
                assistant, s
            )
        ],
        "127.0.0.1:0",
        ["reflow.assistant.v1.AssistantService"],
        token_verifier=backends.tokens,
    )
    await server.start()
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{backends.notebook_port}") as notebook,
        grpc.aio.insecure_channel(f"127.0.0.1:{backends.execution_port}") as execution,
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as to_assistant,
    ):
        downstreams = Downstreams(notebook, execution, to_assistant)
        grpc_server, grpc_port = build_grpc_server(
            identity, backends.tokens, downstreams, "127.0.0.1:0"
        )
        await grpc_server.start()
        app = create_app(identity, downstreams, backends.tokens, ws_settings)
        async with (
            serving_http(app) as http_port,
            grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel,
        ):
            yield Gateway(grpc_port, http_port, identity, channel, backends)
        await grpc_server.stop(None)
    await server.stop(None)


async def chat(socket: ClientConnection, **fields: Any) -> None:
    await socket.send(json.dumps({"type": "chat", "id": "c1", **fields}))


async def chat_events(socket: ClientConnection) -> list[dict[str, Any]]:
    """Every chat_event until the command's reply (the reply last)."""
    messages = []
    while True:
        message = await receive_until_either(socket)
        messages.append(message)
        if message["type"] == "reply":
            return messages


async def receive_until_either(socket: ClientConnection) -> dict[str, Any]:
    while True:
        message = await receive(socket)
        if message["type"] in ("chat_event", "reply"):
            return message


async def test_chat_events_are_relayed_then_answered(chat_gateway: Gateway) -> None:
    notebook = await chat_gateway.notebook()

    async with chat_gateway.socket(notebook.id) as socket:
        await chat(socket, message="hello")
        messages = await chat_events(socket)

    *events, reply = messages
    assert [m["id"] for m in messages] == ["c1"] * len(messages)
    assert [list(e["event"]) for e in events] == [
        ["conversationStarted"],
        ["textDelta"],
        ["textDelta"],
        ["done"],
    ]
    assert "".join(e["event"].get("textDelta", {}).get("text", "") for e in events) == (
        "hello"
    )
    assert reply["ok"] is True
    assert reply["result"] == {"conversationId": "alice-1"}


async def test_chat_fields_reach_the_assistant_for_the_sockets_notebook(
    chat_gateway: Gateway, assistant: FakeAssistant
) -> None:
    notebook = await chat_gateway.notebook()

    async with chat_gateway.socket(notebook.id) as socket:
        await chat(socket, message="hi", conversationId="conv-1", restrictTools=True)
        await chat_events(socket)

    (request,) = assistant.requests
    assert (request.notebook_id, request.conversation_id) == (notebook.id, "conv-1")
    assert request.restrict_tools is True


async def test_chat_that_ends_in_an_error_event_gets_an_error_reply(
    chat_gateway: Gateway,
) -> None:
    notebook = await chat_gateway.notebook()

    async with chat_gateway.socket(notebook.id) as socket:
        await chat(socket, message="fail")
        *_, reply = await chat_events(socket)

    assert reply["ok"] is False
    assert reply["error"]["code"] == "UNAVAILABLE"
    assert reply["error"]["message"] == "model down"


async def test_chat_without_an_assistant_says_what_to_configure(
    gateway: Gateway,
) -> None:
    notebook = await gateway.notebook()

    async with gateway.socket(notebook.id) as socket:
        await chat(socket, message="hello")
        reply = await receive_until(socket, "reply")

    assert reply["ok"] is False
    assert reply["error"]["code"] == "FAILED_PRECONDITION"
    assert "ASSISTANT_SERVICE_ADDR" in reply["error"]["message"]
