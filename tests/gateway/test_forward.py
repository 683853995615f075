"""Forwarding the public services through the gateway: auth, errors, deadlines."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc
import pytest
from google.rpc.error_details_pb2 import BadRequest, ErrorInfo
from grpc_status import rpc_status

from reflow.assistant.v1 import assistant_pb2, assistant_pb2_grpc
from reflow.execution.v1 import execution_pb2
from reflow.notebook.v1 import notebook_pb2, notebook_pb2_grpc
from services.gateway.clients import Downstreams
from services.gateway.server import build_grpc_server
from services.shared.grpc_server import create_server
from tests.gateway.conftest import rpc_error
from tests.gateway.fakes import FakeAssistant

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator

    from tests.gateway.conftest import Gateway

pb = notebook_pb2


async def first(
    stream: AsyncIterable[pb.WatchNotebookResponse],
) -> pb.WatchNotebookResponse:
    async for response in stream:
        return response
    raise AssertionError("the stream ended without a response")


async def drain(stream: AsyncIterable[object]) -> None:
    async for _ in stream:
        pass


def error_info(error: grpc.aio.AioRpcError) -> ErrorInfo:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = ErrorInfo()
    assert any(detail.Unpack(info) for detail in status.details)
    return info


async def test_create_notebook_is_forwarded_for_the_token_user(
    gateway: Gateway,
) -> None:
    reply = await gateway.notebooks.CreateNotebook(
        pb.CreateNotebookRequest(name="Sales"), metadata=gateway.metadata("alice")
    )

    assert (reply.notebook.name, reply.notebook.owner) == ("Sales", "alice")


async def test_get_notebook_is_forwarded(gateway: Gateway) -> None:
    notebook = await gateway.notebook("alice")

    reply = await gateway.notebooks.GetNotebook(
        pb.GetNotebookRequest(notebook_id=notebook.id), metadata=gateway.metadata()
    )

    assert reply.notebook.id == notebook.id


async def test_watch_notebook_streams_the_snapshot_then_changes(
    gateway: Gateway,
) -> None:
    notebook = await gateway.notebook()
    stream = gateway.notebooks.WatchNotebook(
        pb.WatchNotebookRequest(notebook_id=notebook.id), metadata=gateway.metadata()
    )
    snapshot = await first(stream)

    await gateway.notebooks.CreateCell(
        pb.CreateCellRequest(notebook_id=notebook.id, code="x = 1"),
        metadata=gateway.metadata(),
    )
    change = await first(stream)
    stream.cancel()

    assert snapshot.snapshot.id == notebook.id
    assert change.cell_created.cell.writes == ["x"]


async def test_call_without_token_is_unauthenticated(gateway: Gateway) -> None:
    error = await rpc_error(gateway.notebooks.ListNotebooks(pb.ListNotebooksRequest()))

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(error).reason == "TOKEN_MISSING"


async def test_bad_request_status_and_details_pass_through_unchanged(
    gateway: Gateway,
) -> None:
    request = pb.ListNotebooksRequest(page_size=-1)
    request_id = (("x-request-id", "req-1"),)
    direct_channel = f"127.0.0.1:{gateway.backends.notebook_port}"
    internal = (("authorization", f"Bearer {gateway.backends.tokens.mint('alice')}"),)
    async with grpc.aio.insecure_channel(direct_channel) as channel:
        direct = await rpc_error(
            notebook_pb2_grpc.NotebookServiceStub(channel).ListNotebooks(
                request, metadata=internal + request_id
            )
        )

    forwarded = await rpc_error(
        gateway.notebooks.ListNotebooks(
            request, metadata=gateway.metadata() + request_id
        )
    )

    assert forwarded.code() == direct.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert forwarded.details() == direct.details()
    assert rpc_status.from_call(forwarded) == rpc_status.from_call(direct)  # type: ignore[arg-type]


async def test_bad_request_field_violations_reach_the_client(gateway: Gateway) -> None:
    error = await rpc_error(
        gateway.notebooks.CreateCell(
            pb.CreateCellRequest(notebook_id="not an id!"), metadata=gateway.metadata()
        )
    )

    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    bad_request = BadRequest()
    assert any(detail.Unpack(bad_request) for detail in status.details)
    assert [v.field for v in bad_request.field_violations] == ["notebook_id"]


async def test_another_users_notebook_is_not_found(gateway: Gateway) -> None:
    notebook = await gateway.notebook("alice")

    error = await rpc_error(
        gateway.notebooks.GetNotebook(
            pb.GetNotebookRequest(notebook_id=notebook.id),
            metadata=gateway.metadata("bob"),
        )
    )

    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_short_deadline_on_a_stream_is_deadline_exceeded(
    gateway: Gateway,
) -> None:
    notebook = await gateway.notebook()
    stream = gateway.notebooks.WatchNotebook(
        pb.WatchNotebookRequest(notebook_id=notebook.id),
        metadata=gateway.metadata(),
        timeout=0.3,
    )

    error = await rpc_error(drain(stream))

    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_deadline_reaches_the_downstream_call(gateway: Gateway) -> None:
    await rpc_error(
        gateway.execution.GetKernel(
            execution_pb2.GetKernelRequest(notebook_id="nb1"),
            metadata=gateway.metadata(),
            timeout=7,
        )
    )

    remaining = gateway.backends.execution.deadline_of("GetKernel")
    assert remaining is not None
    assert 5 < remaining <= 7


async def test_cancelling_a_stream_cancels_the_downstream_stream(
    gateway: Gateway,
) -> None:
    notebook = await gateway.notebook()
    stream = gateway.notebooks.WatchNotebook(
        pb.WatchNotebookRequest(notebook_id=notebook.id), metadata=gateway.metadata()
    )
    await first(stream)
    await asyncio.wait_for(gateway.backends.hub.wait_for_watchers(notebook.id, 1), 5)

    stream.cancel()

    await asyncio.wait_for(gateway.backends.hub.wait_for_watchers(notebook.id, 0), 5)


async def test_internal_services_are_not_reachable(gateway: Gateway) -> None:
    internal = notebook_pb2_grpc.NotebookInternalServiceStub(gateway.channel)

    error = await rpc_error(
        internal.GetDatabaseConnection(
            pb.GetDatabaseConnectionRequest(notebook_id="nb1"),
            metadata=gateway.metadata(),
        )
    )

    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_routing_header_names_the_notebook(gateway: Gateway) -> None:
    await rpc_error(
        gateway.execution.GetKernel(
            execution_pb2.GetKernelRequest(notebook_id="nb42"),
            metadata=gateway.metadata(),
        )
    )

    metadata = gateway.backends.execution.metadata_of("GetKernel")
    assert metadata["x-reflow-notebook-id"] == "nb42"


async def test_downstream_gets_an_internal_token_not_the_users(
    gateway: Gateway,
) -> None:
    user_metadata = gateway.metadata("carol")

    await rpc_error(
        gateway.execution.GetKernel(
            execution_pb2.GetKernelRequest(notebook_id="nb1"), metadata=user_metadata
        )
    )

    metadata = gateway.backends.execution.metadata_of("GetKernel")
    assert metadata["authorization"] != user_metadata[0][1]
    assert metadata["user"] == "carol"  # the internal token verified as carol's


async def test_server_stream_errors_pass_through(gateway: Gateway) -> None:
    stream = gateway.notebooks.WatchNotebook(
        pb.WatchNotebookRequest(notebook_id="missing"), metadata=gateway.metadata()
    )

    error = await rpc_error(drain(stream))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(error).reason == "NOTEBOOK_NOT_FOUND"


async def test_tracing_headers_are_passed_on(gateway: Gateway) -> None:
    await rpc_error(
        gateway.execution.GetKernel(
            execution_pb2.GetKernelRequest(notebook_id="nb1"),
            metadata=(
                *gateway.metadata(),
                ("x-request-id", "req-7"),
                ("cookie", "a=b"),
            ),
        )
    )

    metadata = gateway.backends.execution.metadata_of("GetKernel")
    assert metadata["x-request-id"] == "req-7"
    assert "cookie" not in metadata


@pytest.fixture
async def assistant_channel(gateway: Gateway) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to a gateway that also forwards to a (fake) assistant service."""
    assistant, port = create_server(
        [
            lambda s: assistant_pb2_grpc.add_AssistantServiceServicer_to_server(
                FakeAssistant(), s
            )
        ],
        "127.0.0.1:0",
        ["reflow.assistant.v1.AssistantService"],
        token_verifier=gateway.backends.tokens,
    )
    await assistant.start()
    backends = gateway.backends
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{backends.notebook_port}") as notebook,
        grpc.aio.insecure_channel(f"127.0.0.1:{backends.execution_port}") as execution,
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as to_assistant,
    ):
        downstreams = Downstreams(notebook, execution, to_assistant)
        server, gateway_port = build_grpc_server(
            gateway.identity, backends.tokens, downstreams, "127.0.0.1:0"
        )
        await server.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway_port}") as channel:
            yield channel
        await server.stop(None)
    await assistant.stop(None)


async def test_assistant_chat_is_forwarded_when_configured(
    gateway: Gateway, assistant_channel: grpc.aio.Channel
) -> None:
    chat = assistant_pb2_grpc.AssistantServiceStub(assistant_channel).Chat(
        assistant_pb2.ChatRequest(notebook_id="nb1", message="hello"),
        metadata=gateway.metadata("dora"),
    )

    replies = [reply async for reply in chat]

    assert replies[0].conversation_started.conversation_id == "dora-1"
    assert "".join(r.text_delta.text for r in replies[1:]) == "hello"


async def test_assistant_is_unimplemented_when_not_configured(
    gateway: Gateway,
) -> None:
    stub = assistant_pb2_grpc.AssistantServiceStub(gateway.channel)

    error = await rpc_error(
        stub.ListConversations(
            assistant_pb2.ListConversationsRequest(notebook_id="nb1"),
            metadata=gateway.metadata(),
        )
    )

    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
