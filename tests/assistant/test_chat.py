"""Chat end to end: the real openai client against a scripted model server, and
the tools acting on real notebook and execution services with real kernels."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.rpc.error_details_pb2 import ErrorInfo
from google.rpc.status_pb2 import Status

from reflow.assistant.v1 import assistant_pb2
from reflow.notebook.v1 import notebook_pb2
from services.assistant.config import TurnLimits
from services.assistant.store.memory import MemoryConversationStore
from services.shared.grpc_client import STATUS_DETAILS_KEY
from tests.assistant.conftest import (
    API_KEY,
    finished_calls,
    kinds,
    serve_assistant,
    started_calls,
    text_of,
)
from tests.assistant.model_server import Call, Reply, chunk, text, tool_call, tool_calls

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from tests.assistant.conftest import ChatClient
    from tests.execution.conftest import Stack


def tool_results(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool results a model request carried, decoded, in order."""
    return [
        json.loads(message["content"])
        for message in request["messages"]
        if message["role"] == "tool"
    ]


def created_cell_id(request: dict[str, Any]) -> str:
    """The id of the cell the last tool result (a create_cell) reported."""
    cell_id: str = tool_results(request)[-1]["cell"]["id"]
    return cell_id


async def get_cells(stack: Stack, notebook_id: str) -> list[notebook_pb2.Cell]:
    reply = await stack.notebooks.GetNotebook(
        notebook_pb2.GetNotebookRequest(notebook_id=notebook_id),
        metadata=stack.metadata(),
    )
    return list(reply.notebook.cells)


async def create_run_explain(
    chat: ChatClient,
) -> tuple[str, list[assistant_pb2.ChatResponse]]:
    """A turn in which the model adds a cell, runs it and explains the output."""
    (notebook_id,) = await chat.stack.notebook()
    chat.model.add(
        tool_call("create_cell", code="print(6 * 7)"),
        lambda request: tool_call(
            "run_cells", "call_2", cell_ids=[created_cell_id(request)]
        ),
        text("The cell printed ", "42."),
    )
    responses = await chat.send(notebook_id, "Print six times seven")
    return notebook_id, responses


# --- a whole turn


async def test_chat_creates_the_cell_in_the_notebook(chat: ChatClient) -> None:
    notebook_id, _ = await create_run_explain(chat)

    cells = await get_cells(chat.stack, notebook_id)

    assert [cell.code for cell in cells] == ["print(6 * 7)"]


async def test_chat_runs_the_cell_in_a_real_kernel(chat: ChatClient) -> None:
    notebook_id, _ = await create_run_explain(chat)
    await chat.stack.recorder.wait_idle()

    (cell,) = await get_cells(chat.stack, notebook_id)

    assert cell.result.status == notebook_pb2.CELL_STATUS_SUCCESS
    assert cell.result.stdout == "42\n"


async def test_chat_streams_tool_events_then_the_explanation(
    chat: ChatClient,
) -> None:
    _, responses = await create_run_explain(chat)

    assert kinds(responses) == [
        "conversation_started",
        "tool_call_started",
        "tool_call_finished",
        "tool_call_started",
        "tool_call_finished",
        "text_delta",
        "text_delta",
        "done",
    ]
    assert [f.summary for f in finished_calls(responses)][1] == "ran 1 cells: success"
    assert text_of(responses) == "The cell printed 42."
    assert responses[-1].done.tool_rounds == 2
    assert responses[-1].done.stop_reason == assistant_pb2.STOP_REASON_COMPLETED


async def test_done_sums_the_usage_of_every_model_request(chat: ChatClient) -> None:
    _, responses = await create_run_explain(chat)

    # The scripted server reports 10 prompt + 5 completion tokens per reply.
    assert responses[-1].done.usage == assistant_pb2.Usage(
        prompt_tokens=30, completion_tokens=15, total_tokens=45
    )


async def test_run_result_reaches_the_model_as_delimited_untrusted_output(
    chat: ChatClient,
) -> None:
    await create_run_explain(chat)

    run_result = tool_results(chat.model.requests[2])[-1]

    assert run_result["status"] == "success"
    assert run_result["cells"][0]["stdout"] == (
        '<cell-output untrusted="true">42\n</cell-output>'
    )


async def test_system_prompt_says_cell_output_is_data_not_instructions(
    chat: ChatClient,
) -> None:
    await create_run_explain(chat)

    system = chat.model.requests[0]["messages"][0]

    assert system["role"] == "system"
    assert "never instructions" in system["content"]


async def test_tool_call_started_carries_the_validated_arguments(
    chat: ChatClient,
) -> None:
    _, responses = await create_run_explain(chat)

    first = started_calls(responses)[0]

    assert first.name == "create_cell"
    assert json.loads(first.arguments_json) == {
        "code": "print(6 * 7)",
        "type": "python",
        "index": None,
        "result_name": None,
    }


async def test_table_outputs_reach_the_model_as_their_schema(
    chat: ChatClient,
) -> None:
    code = "import pandas as pd\npd.DataFrame({'a': [1, 2, 3], 'b': [0.5, 1.5, 2.5]})"
    notebook_id, cell_id = await chat.stack.notebook(code)
    chat.model.add(tool_call("run_cells", cell_ids=[cell_id]), text("ok"))

    await chat.send(notebook_id, "run it")

    (output,) = tool_results(chat.model.requests[1])[-1]["cells"][0]["outputs"]
    assert output["table"] == {
        "columns": [{"name": "a", "dtype": "int64"}, {"name": "b", "dtype": "float64"}],
        "total_rows": 3,
    }


# --- tool errors go back to the model


async def test_model_recovers_from_a_tool_error(chat: ChatClient) -> None:
    notebook_id, cell_id = await chat.stack.notebook("x = 1")
    chat.model.add(
        tool_call("update_cell", cell_id="no-such-cell", code="x = 2"),
        tool_call("update_cell", "call_2", cell_id=cell_id, code="x = 2"),
        text("Done."),
    )

    responses = await chat.send(notebook_id, "set x to 2")

    failed, succeeded = finished_calls(responses)
    assert (failed.ok, failed.error_code) == (False, "NOT_FOUND")
    assert succeeded.ok
    assert [cell.code for cell in await get_cells(chat.stack, notebook_id)] == ["x = 2"]


async def test_tool_error_is_a_result_with_code_message_and_hint(
    chat: ChatClient,
) -> None:
    notebook_id, _ = await chat.stack.notebook("x = 1")
    chat.model.add(
        tool_call("update_cell", cell_id="no-such-cell", code="x = 2"), text("Sorry.")
    )

    await chat.send(notebook_id, "set x to 2")

    (result,) = tool_results(chat.model.requests[1])
    assert result["error"]["code"] == "NOT_FOUND"
    assert "no-such-cell" in result["error"]["message"]
    assert "read_notebook" in result["error"]["hint"]


async def test_unknown_argument_is_refused_as_invalid(chat: ChatClient) -> None:
    (notebook_id,) = await chat.stack.notebook()
    chat.model.add(tool_call("create_cell", code="x = 1", colour="red"), text("ok"))

    responses = await chat.send(notebook_id, "add a cell")

    (finished,) = finished_calls(responses)
    assert finished.error_code == "INVALID_ARGUMENT"
    assert "colour" in finished.summary
    assert await get_cells(chat.stack, notebook_id) == []


async def test_unknown_tool_is_a_tool_error(chat: ChatClient) -> None:
    (notebook_id,) = await chat.stack.notebook()
    chat.model.add(tool_call("format_disk"), text("ok"))

    responses = await chat.send(notebook_id, "hi")

    assert finished_calls(responses)[0].error_code == "NOT_FOUND"
    assert responses[-1].HasField("done")


# --- bounds


@pytest.mark.parametrize(
    "turn_limits", [TurnLimits(max_tool_rounds=2, deadline_s=60)], indirect=True
)
async def test_round_cap_ends_the_turn_with_a_notice(chat: ChatClient) -> None:
    (notebook_id,) = await chat.stack.notebook()
    for number in range(3):
        chat.model.add(tool_call("read_notebook", f"call_{number}"))

    responses = await chat.send(notebook_id, "loop forever")

    done = responses[-1].done
    assert (done.tool_rounds, done.stop_reason) == (
        2,
        assistant_pb2.STOP_REASON_TOOL_ROUNDS_EXHAUSTED,
    )
    assert "limit of 2 rounds" in text_of(responses)
    assert len(chat.model.requests) == 3
    assert len(finished_calls(responses)) == 2


@pytest.mark.parametrize(
    "turn_limits", [TurnLimits(max_tool_rounds=1, deadline_s=60)], indirect=True
)
async def test_history_after_the_round_cap_stays_well_formed(
    chat: ChatClient,
) -> None:
    (notebook_id,) = await chat.stack.notebook()
    chat.model.add(tool_call("read_notebook", "c1"), tool_call("read_notebook", "c2"))
    first = await chat.send(notebook_id, "loop")
    chat.model.add(text("fine"))

    await chat.send(notebook_id, "go on", first[0].conversation_started.conversation_id)

    messages = chat.model.requests[-1]["messages"]
    answered = [m["tool_call_id"] for m in messages if m["role"] == "tool"]
    assert answered == ["c1", "c2"]
    assert tool_results(chat.model.requests[-1])[-1]["error"]["code"] == (
        "RESOURCE_EXHAUSTED"
    )


@pytest.mark.parametrize("turn_limits", [TurnLimits(deadline_s=0.5)], indirect=True)
async def test_turn_past_its_deadline_ends_with_an_error(chat: ChatClient) -> None:
    (notebook_id,) = await chat.stack.notebook()
    chat.model.add(Reply([chunk({"content": "Let me think"})], hang=True))

    responses = await chat.send(notebook_id, "think hard")

    assert kinds(responses)[-1] == "error"
    assert responses[-1].error.code == "DEADLINE_EXCEEDED"
    assert "ASSISTANT_TURN_DEADLINE_S" in responses[-1].error.message


# --- what servers do differently


async def test_server_repeating_id_and_name_in_every_fragment(
    chat: ChatClient,
) -> None:
    (notebook_id,) = await chat.stack.notebook()
    code = "total = sum(range(10))\nprint(total)"
    chat.model.add(
        tool_calls(
            Call("call_9", "create_cell", {"code": code}),
            pieces=5,
            repeat_id_and_name=True,
        ),
        text("Added."),
    )

    responses = await chat.send(notebook_id, "sum to ten")

    assert [call.id for call in started_calls(responses)] == ["call_9"]
    assert [cell.code for cell in await get_cells(chat.stack, notebook_id)] == [code]


async def test_server_that_never_sends_done(chat: ChatClient) -> None:
    (notebook_id,) = await chat.stack.notebook()
    chat.model.add(text("All ", "good.", done=False))

    responses = await chat.send(notebook_id, "hi")

    assert text_of(responses) == "All good."
    assert kinds(responses)[-1] == "done"


async def test_stream_broken_mid_answer_is_a_chat_error_not_a_retry(
    chat: ChatClient,
) -> None:
    (notebook_id,) = await chat.stack.notebook()
    chat.model.add(text("Half an ans", break_connection=True), text("other answer"))

    responses = await chat.send(notebook_id, "hi")

    assert kinds(responses) == ["conversation_started", "text_delta", "error"]
    assert responses[-1].error.code == "UNAVAILABLE"
    assert len(chat.model.requests) == 1


async def test_text_seen_before_a_failure_is_kept_in_the_conversation(
    chat: ChatClient,
) -> None:
    (notebook_id,) = await chat.stack.notebook()
    chat.model.add(text("Half an ans", break_connection=True))
    responses = await chat.send(notebook_id, "hi")

    conversation = await chat.store.get(
        "alice", responses[0].conversation_started.conversation_id
    )

    assert [m.text for m in conversation.messages] == ["hi", "Half an ans"]


# --- the client goes away


async def test_client_hanging_up_closes_the_model_request(chat: ChatClient) -> None:
    (notebook_id,) = await chat.stack.notebook()
    chat.model.add(Reply([chunk({"content": "I will talk for ever"})], hang=True))
    call = chat.stub.Chat(
        chat.request(notebook_id, "talk"), metadata=chat.metadata(), timeout=60
    )
    async for response in call:
        if response.HasField("text_delta"):
            break

    call.cancel()

    await asyncio.wait_for(chat.model.disconnected.wait(), 10)


@contextlib.asynccontextmanager
async def signal_port() -> AsyncIterator[tuple[int, asyncio.Event]]:
    """A port a cell connects to, to say it is running; and the event it sets."""
    connected = asyncio.Event()

    async def accept(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        connected.set()
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], connected
    finally:
        server.close()
        await server.wait_closed()


async def recorded_status(
    watch: grpc.aio.UnaryStreamCall[Any, notebook_pb2.WatchNotebookResponse],
    cell_id: str,
) -> int:
    """The status of the next result recorded for the cell."""
    while True:
        event = await watch.read()
        assert isinstance(event, notebook_pb2.WatchNotebookResponse)
        recorded = event.cell_result_recorded
        if event.HasField("cell_result_recorded") and recorded.cell_id == cell_id:
            status: int = recorded.result.status
            return status


async def test_client_hanging_up_interrupts_the_cell_it_started(
    chat: ChatClient,
) -> None:
    async with signal_port() as (port, running):
        code = (
            "import socket, time\n"
            f"socket.create_connection(('127.0.0.1', {port})).close()\n"
            "time.sleep(600)"
        )
        notebook_id, cell_id = await chat.stack.notebook(code)
        watch = chat.stack.notebooks.WatchNotebook(
            notebook_pb2.WatchNotebookRequest(notebook_id=notebook_id),
            metadata=chat.stack.metadata(),
        )
        await watch.read()  # the snapshot: the watch is in place
        chat.model.add(tool_call("run_cells", cell_ids=[cell_id]))
        call = chat.stub.Chat(
            chat.request(notebook_id, "run it"), metadata=chat.metadata(), timeout=60
        )
        await asyncio.wait_for(running.wait(), 30)

        call.cancel()

        status = await asyncio.wait_for(recorded_status(watch, cell_id), 30)
        watch.cancel()
    assert status == notebook_pb2.CELL_STATUS_INTERRUPTED


# --- tools switched off


async def test_restricted_turn_offers_no_tool_that_runs_or_deletes(
    chat: ChatClient,
) -> None:
    (notebook_id,) = await chat.stack.notebook()
    chat.model.add(text("ok"))

    await chat.send(notebook_id, "hi", restrict_tools=True)

    offered = {tool["function"]["name"] for tool in chat.model.requests[0]["tools"]}
    assert offered == {"read_notebook", "create_cell", "update_cell", "move_cell"}


async def test_unrestricted_turn_offers_every_tool(chat: ChatClient) -> None:
    (notebook_id,) = await chat.stack.notebook()
    chat.model.add(text("ok"))

    await chat.send(notebook_id, "hi")

    offered = {tool["function"]["name"] for tool in chat.model.requests[0]["tools"]}
    assert {"run_cells", "delete_cell", "interrupt"} <= offered


async def test_restricted_tool_called_anyway_is_refused(chat: ChatClient) -> None:
    notebook_id, cell_id = await chat.stack.notebook("print('side effect')")
    chat.model.add(tool_call("run_cells", cell_ids=[cell_id]), text("I could not."))

    responses = await chat.send(notebook_id, "run it", restrict_tools=True)

    (finished,) = finished_calls(responses)
    assert (finished.ok, finished.error_code) == (False, "PERMISSION_DENIED")
    (cell,) = await get_cells(chat.stack, notebook_id)
    assert not cell.HasField("result")


# --- the conversation


async def test_next_turn_sends_the_history_back_to_the_model(
    chat: ChatClient,
) -> None:
    (notebook_id,) = await chat.stack.notebook()
    chat.model.add(text("Hello Ada."), text("You are Ada."))
    first = await chat.send(notebook_id, "I am Ada")
    conversation_id = first[0].conversation_started.conversation_id

    await chat.send(notebook_id, "Who am I?", conversation_id)

    assert chat.model.requests[1]["messages"][1:] == [
        {"role": "user", "content": "I am Ada"},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "Who am I?"},
    ]


async def test_conversation_is_listed_and_readable(chat: ChatClient) -> None:
    (notebook_id,) = await chat.stack.notebook()
    chat.model.add(text("Hi!"))
    responses = await chat.send(notebook_id, "Hello there")
    conversation_id = responses[0].conversation_started.conversation_id

    listed = await chat.stub.ListConversations(
        assistant_pb2.ListConversationsRequest(notebook_id=notebook_id),
        metadata=chat.metadata(),
    )
    got = await chat.stub.GetConversation(
        assistant_pb2.GetConversationRequest(conversation_id=conversation_id),
        metadata=chat.metadata(),
    )

    assert [(c.id, c.title) for c in listed.conversations] == [
        (conversation_id, "Hello there")
    ]
    assert [(m.role, m.text) for m in got.conversation.messages] == [
        (assistant_pb2.ROLE_USER, "Hello there"),
        (assistant_pb2.ROLE_ASSISTANT, "Hi!"),
    ]


async def test_another_users_conversation_is_not_found(chat: ChatClient) -> None:
    (notebook_id,) = await chat.stack.notebook()
    chat.model.add(text("Hi!"))
    responses = await chat.send(notebook_id, "Hello")
    conversation_id = responses[0].conversation_started.conversation_id

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await chat.stub.GetConversation(
            assistant_pb2.GetConversationRequest(conversation_id=conversation_id),
            metadata=chat.metadata("bob"),
        )

    assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_continuing_another_users_conversation_is_not_found(
    chat: ChatClient,
) -> None:
    (notebook_id,) = await chat.stack.notebook()
    chat.model.add(text("Hi!"))
    responses = await chat.send(notebook_id, "Hello")
    conversation_id = responses[0].conversation_started.conversation_id
    (bobs_notebook,) = await chat.stack.notebook(user="bob")

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await chat.send(bobs_notebook, "hi", conversation_id, user="bob")

    assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_chat_about_another_users_notebook_is_not_found(
    chat: ChatClient,
) -> None:
    (notebook_id,) = await chat.stack.notebook()

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await chat.send(notebook_id, "hi", user="bob")

    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert chat.model.requests == []


async def test_empty_message_is_invalid(chat: ChatClient) -> None:
    (notebook_id,) = await chat.stack.notebook()

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await chat.send(notebook_id, "  ")

    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- the audit log


async def audit_lines(chat: ChatClient) -> list[dict[str, Any]]:
    await create_run_explain(chat)
    lines = chat.audit_log.read_text().splitlines()
    return [json.loads(line) for line in lines]


async def test_audit_log_has_one_line_per_tool_action(chat: ChatClient) -> None:
    lines = await audit_lines(chat)

    assert [(line["tool"], line["outcome"]) for line in lines] == [
        ("create_cell", "ok"),
        ("run_cells", "ok"),
    ]
    assert set(lines[0]) == {
        "time",
        "user",
        "notebook",
        "conversation",
        "tool",
        "arguments",
        "outcome",
        "duration_ms",
    }
    assert lines[0]["user"] == "alice"
    assert lines[0]["arguments"]["code"] == "print(6 * 7)"


async def test_audit_log_records_failed_actions_with_their_code(
    chat: ChatClient,
) -> None:
    notebook_id, _ = await chat.stack.notebook("x = 1")
    chat.model.add(tool_call("delete_cell", cell_id="nope"), text("Sorry."))

    await chat.send(notebook_id, "delete it")

    (line,) = [json.loads(x) for x in chat.audit_log.read_text().splitlines()]
    assert (line["outcome"], line["error_code"]) == ("error", "NOT_FOUND")


async def test_audit_log_holds_no_api_key_or_token(chat: ChatClient) -> None:
    await audit_lines(chat)

    content = chat.audit_log.read_text()

    assert API_KEY not in content
    assert "eyJ" not in content  # no JWT (internal tokens are JWTs)
    assert "Bearer" not in content


# --- no model configured


@pytest.fixture
async def unconfigured(
    stack: Stack, tmp_path: Path
) -> AsyncIterator[tuple[grpc.aio.Channel, MemoryConversationStore]]:
    """An assistant service with no model at all."""
    store = MemoryConversationStore()
    limits = TurnLimits()
    server, port = await serve_assistant(stack, None, store, tmp_path / "a.log", limits)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel, store
    await server.stop(None)


def error_info(error: grpc.aio.AioRpcError) -> ErrorInfo:
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            info = ErrorInfo()
            for detail in Status.FromString(value).details:
                if detail.Unpack(info):
                    return info
    raise AssertionError("no ErrorInfo")


async def test_chat_without_a_model_names_the_setting(
    stack: Stack,
    unconfigured: tuple[grpc.aio.Channel, MemoryConversationStore],
) -> None:
    from reflow.assistant.v1 import assistant_pb2_grpc

    stub = assistant_pb2_grpc.AssistantServiceStub(unconfigured[0])
    (notebook_id,) = await stack.notebook()
    call = stub.Chat(
        assistant_pb2.ChatRequest(notebook_id=notebook_id, message="hi"),
        metadata=stack.metadata(),
    )

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call.read()

    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "OPENAI_API_KEY" in (error.value.details() or "")
    assert error_info(error.value).reason == "LLM_NOT_CONFIGURED"


async def test_conversations_can_be_listed_without_a_model(
    stack: Stack,
    unconfigured: tuple[grpc.aio.Channel, MemoryConversationStore],
) -> None:
    from reflow.assistant.v1 import assistant_pb2_grpc

    stub = assistant_pb2_grpc.AssistantServiceStub(unconfigured[0])

    listed = await stub.ListConversations(
        assistant_pb2.ListConversationsRequest(notebook_id="nb1"),
        metadata=stack.metadata(),
    )

    assert list(listed.conversations) == []
