"""The model client: the real openai client against a scripted server on loopback."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from services.assistant.config import ModelSettings
from services.assistant.llm import (
    ModelError,
    ModelReply,
    OpenAIChatModel,
    TextChunk,
    ToolCallAssembler,
    ToolSpec,
)
from services.assistant.models import Message, Role, ToolCall
from tests.assistant.model_server import (
    Call,
    Reply,
    ScriptedModelServer,
    chunk,
    text,
    tool_calls,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from services.assistant.llm import ModelEvent

API_KEY = "sk-test-0123456789abcdef"
CALL = Call("call_7", "create_cell", {"code": "x = 1\nprint(x)", "type": "python"})
TOOL = ToolSpec("create_cell", "Add a cell.", {"type": "object", "properties": {}})


@pytest.fixture
async def server() -> AsyncIterator[ScriptedModelServer]:
    server = ScriptedModelServer()
    await server.start()
    yield server
    await server.close()


def model_of(server: ScriptedModelServer, **changes: Any) -> OpenAIChatModel:
    options: dict[str, Any] = {
        "api_key": API_KEY,
        "base_url": server.url,
        "model": "scripted-model",
        "read_timeout_s": 5.0,
        "max_retries": 2,
        **changes,
    }
    return OpenAIChatModel(ModelSettings(**options))


async def events_of(
    server: ScriptedModelServer, *replies: Reply, **changes: Any
) -> list[ModelEvent]:
    server.add(*replies)
    model = model_of(server, **changes)
    try:
        hello = [Message(Role.USER, "hello")]
        return [event async for event in model.stream("be brief", hello, [TOOL])]
    finally:
        await model.close()


async def failure_of(server: ScriptedModelServer, *replies: Reply) -> ModelError:
    with pytest.raises(ModelError) as info:
        await events_of(server, *replies)
    return info.value


def reply_of(events: list[ModelEvent]) -> ModelReply:
    last = events[-1]
    assert isinstance(last, ModelReply)
    return last


# --- the request


async def test_request_streams_with_usage_and_offers_the_tools(
    server: ScriptedModelServer,
) -> None:
    await events_of(server, text("hi"))

    request = server.requests[0]
    assert request["stream"] is True
    assert request["stream_options"] == {"include_usage": True}
    assert request["model"] == "scripted-model"
    assert [t["function"]["name"] for t in request["tools"]] == ["create_cell"]


async def test_request_starts_with_the_system_prompt_then_the_history(
    server: ScriptedModelServer,
) -> None:
    await events_of(server, text("hi"))

    assert server.requests[0]["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello"},
    ]


async def test_api_key_is_sent_as_a_bearer_token(server: ScriptedModelServer) -> None:
    await events_of(server, text("hi"))

    assert server.headers[0]["authorization"] == f"Bearer {API_KEY}"


async def test_tool_calls_and_results_are_sent_back_in_openai_shape(
    server: ScriptedModelServer,
) -> None:
    server.add(text("ok"))
    history = [
        Message(Role.USER, "add a cell"),
        Message(Role.ASSISTANT, "", (ToolCall("c1", "create_cell", "{}"),)),
        Message(Role.TOOL, '{"cell": {"id": "a"}}', tool_call_id="c1"),
    ]
    model = model_of(server)

    [event async for event in model.stream("sys", history, [TOOL])]
    await model.close()

    assert server.requests[0]["messages"][2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "create_cell", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"cell": {"id": "a"}}'},
    ]


# --- the reply


async def test_text_arrives_in_chunks_then_the_reply_with_usage(
    server: ScriptedModelServer,
) -> None:
    events = await events_of(server, text("Hel", "lo"))

    assert events[:2] == [TextChunk("Hel"), TextChunk("lo")]
    assert reply_of(events).text == "Hello"
    assert reply_of(events).usage.total_tokens == 15


async def test_tool_call_split_over_chunks_is_assembled(
    server: ScriptedModelServer,
) -> None:
    events = await events_of(server, tool_calls(CALL, pieces=4))

    assert reply_of(events).tool_calls == (
        ToolCall("call_7", "create_cell", json.dumps(CALL.arguments)),
    )


async def test_id_and_name_repeated_in_every_fragment_are_taken_once(
    server: ScriptedModelServer,
) -> None:
    events = await events_of(server, tool_calls(CALL, repeat_id_and_name=True))

    assert reply_of(events).tool_calls == (
        ToolCall("call_7", "create_cell", json.dumps(CALL.arguments)),
    )


async def test_arguments_sent_as_an_object_are_serialised(
    server: ScriptedModelServer,
) -> None:
    events = await events_of(server, tool_calls(CALL, arguments_as_object=True))

    (call,) = reply_of(events).tool_calls
    assert json.loads(call.arguments_json) == CALL.arguments


async def test_fragments_without_index_are_keyed_by_their_id(
    server: ScriptedModelServer,
) -> None:
    events = await events_of(
        server, tool_calls(CALL, with_index=False, repeat_id_and_name=True)
    )

    (call,) = reply_of(events).tool_calls
    assert json.loads(call.arguments_json) == CALL.arguments


async def test_call_without_an_id_is_given_one(server: ScriptedModelServer) -> None:
    events = await events_of(server, tool_calls(CALL, with_id=False))

    (call,) = reply_of(events).tool_calls
    assert call.id.startswith("call_")
    assert call.name == "create_cell"


async def test_two_calls_in_one_reply_stay_apart(server: ScriptedModelServer) -> None:
    second = Call("call_8", "read_notebook", {})

    events = await events_of(server, tool_calls(CALL, second))

    assert [c.name for c in reply_of(events).tool_calls] == [
        "create_cell",
        "read_notebook",
    ]


async def test_stream_without_done_ends_normally(server: ScriptedModelServer) -> None:
    events = await events_of(server, text("bye", done=False))

    assert reply_of(events).text == "bye"


async def test_tool_calls_count_whatever_the_finish_reason(
    server: ScriptedModelServer,
) -> None:
    events = await events_of(server, tool_calls(CALL, finish_reason="stop"))

    assert len(reply_of(events).tool_calls) == 1


# --- failures


async def test_stream_broken_after_text_fails_and_is_not_retried(
    server: ScriptedModelServer,
) -> None:
    error = await failure_of(
        server, text("partial", break_connection=True), text("second answer")
    )

    assert error.code == "UNAVAILABLE"
    assert len(server.requests) == 1


async def test_error_event_after_text_fails_and_is_not_retried(
    server: ScriptedModelServer,
) -> None:
    broken = Reply(
        [chunk({"content": "partial"}), {"error": {"message": "overloaded"}}]
    )

    error = await failure_of(server, broken, text("second answer"))

    assert error.code == "UNAVAILABLE"
    assert "overloaded" in error.message
    assert len(server.requests) == 1


async def test_stream_broken_before_any_text_is_retried(
    server: ScriptedModelServer,
) -> None:
    events = await events_of(
        server, Reply([chunk({"role": "assistant"})], break_connection=True), text("ok")
    )

    assert reply_of(events).text == "ok"
    assert len(server.requests) == 2


async def test_silent_server_times_out_naming_the_setting(
    server: ScriptedModelServer,
) -> None:
    server.add(Reply([chunk({"content": "thinking"})], hang=True))

    with pytest.raises(ModelError) as info:
        await events_of(server, read_timeout_s=0.3)

    assert info.value.code == "DEADLINE_EXCEEDED"
    assert "ASSISTANT_READ_TIMEOUT_S" in info.value.message


async def test_refused_api_key_names_the_setting(server: ScriptedModelServer) -> None:
    error = await failure_of(server, Reply(status=401))

    assert error.code == "FAILED_PRECONDITION"
    assert "OPENAI_API_KEY" in error.message
    assert API_KEY not in error.message


async def test_unreachable_server_is_unavailable() -> None:
    settings = ModelSettings(
        api_key=API_KEY, base_url="http://127.0.0.1:9/v1", max_retries=0
    )
    model = OpenAIChatModel(settings)

    with pytest.raises(ModelError) as info:
        [e async for e in model.stream("s", [Message(Role.USER, "hi")], [])]
    await model.close()

    assert info.value.code == "UNAVAILABLE"


# --- the assembler on its own


def fragment(**fields: Any) -> dict[str, Any]:
    return fields


OBJECT_ARGUMENTS = {"name": "f", "arguments": {"x": 1}}


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        pytest.param(
            [
                [fragment(index=0, id="a", function={"name": "f", "arguments": '{"x'})],
                [fragment(index=0, function={"arguments": '": 1}'})],
            ],
            [ToolCall("a", "f", '{"x": 1}')],
            id="by index",
        ),
        pytest.param(
            [
                [fragment(index=0, id="a", function={"name": "f", "arguments": "{"})],
                [fragment(index=0, id="a", function={"name": "f", "arguments": "}"})],
            ],
            [ToolCall("a", "f", "{}")],
            id="id and name repeated",
        ),
        pytest.param(
            [
                [fragment(id="a", function={"name": "f", "arguments": "{"})],
                [fragment(function={"arguments": "}"})],
            ],
            [ToolCall("a", "f", "{}")],
            id="no index: by position",
        ),
        pytest.param(
            [
                [
                    fragment(
                        index=0, id="a", function={"name": "f", "arguments": {"x": 1}}
                    )
                ]
            ],
            [ToolCall("a", "f", '{"x": 1}')],
            id="arguments as an object",
        ),
        pytest.param(
            [[fragment(index=0, id="a", function={"name": "f"})]],
            [ToolCall("a", "f", "{}")],
            id="no arguments at all",
        ),
        pytest.param(
            [
                [
                    fragment(index=0, id="a", function={"name": "f", "arguments": ""}),
                    fragment(index=1, id="b", function={"name": "g", "arguments": ""}),
                ],
                [fragment(index=1, function={"arguments": "{}"})],
            ],
            [ToolCall("a", "f", "{}"), ToolCall("b", "g", "{}")],
            id="two calls in one chunk",
        ),
    ],
)
def test_assembler(chunks: list[list[object]], expected: list[ToolCall]) -> None:
    assembler = ToolCallAssembler()

    for fragments in chunks:
        assembler.add(fragments)

    assert list(assembler.calls()) == expected
