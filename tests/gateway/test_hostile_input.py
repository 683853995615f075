"""Malformed input at the gateway: answered with the field, never INTERNAL or 1011.

Ids that cannot be put in gRPC metadata, bytes that do not parse, JSON nested
100,000 levels deep, and a downstream service that is down: each gets a
status a client can act on, and nothing of the services' topology.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import grpc
import pytest
from google.rpc.error_details_pb2 import BadRequest, RequestInfo, RetryInfo
from grpc_status import rpc_status
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from reflow.execution.v1 import execution_pb2, execution_pb2_grpc
from reflow.notebook.v1 import notebook_pb2
from services.gateway.clients import Downstreams
from services.gateway.server import build_grpc_server
from services.shared.grpc_client import open_channel
from tests.gateway.conftest import receive, receive_until, rpc_error
from tests.stack.stack_process import free_ports

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from google.protobuf.message import Message

    from services.gateway.auth import Identity
    from tests.gateway.conftest import Backends, Gateway

DEEP_JSON = "[" * 100_000 + "]" * 100_000


def detail_of(error: grpc.aio.AioRpcError, message: Message) -> Message | None:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for packed in status.details:
        if packed.Unpack(message):
            return message
    return None


@pytest.mark.parametrize("notebook_id", ["a\x00b", "é", "a" * 65, "a/b", " "])
async def test_bad_notebook_id_is_invalid_argument_naming_the_field(
    gateway: Gateway, notebook_id: str
) -> None:
    error = await rpc_error(
        gateway.notebooks.GetNotebook(
            notebook_pb2.GetNotebookRequest(notebook_id=notebook_id),
            metadata=gateway.metadata(),
        )
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = detail_of(error, BadRequest())
    assert isinstance(violations, BadRequest)
    assert [v.field for v in violations.field_violations] == ["notebook_id"]


@pytest.mark.parametrize(
    "body", [b"\x0a\x05ab", b"\x0a\x02\xff\xfe", b"\xff"], ids=["cut", "utf8", "tag"]
)
async def test_undecodable_request_is_invalid_argument(
    gateway: Gateway, body: bytes
) -> None:
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = gateway.channel.unary_unary(
        "/reflow.notebook.v1.NotebookService/GetNotebook"
    )

    error = await rpc_error(call(body, metadata=gateway.metadata()))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
async def gateway_without_execution(
    backends: Backends, identity: Identity
) -> AsyncIterator[grpc.aio.Channel]:
    """A gateway whose execution service is down (nothing listens there)."""
    [dead_port] = free_ports(1)
    async with (
        open_channel(f"127.0.0.1:{backends.notebook_port}") as notebook,
        open_channel(f"127.0.0.1:{dead_port}") as execution,
    ):
        server, port = build_grpc_server(
            identity, backends.tokens, Downstreams(notebook, execution), "127.0.0.1:0"
        )
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                yield channel
        finally:
            await server.stop(None)


async def test_a_service_that_is_down_is_unavailable_without_addresses(
    gateway: Gateway, gateway_without_execution: grpc.aio.Channel
) -> None:
    stub = execution_pb2_grpc.ExecutionServiceStub(gateway_without_execution)
    request_id = (("x-request-id", "req-down"),)

    error = await rpc_error(
        stub.GetKernel(
            execution_pb2.GetKernelRequest(notebook_id="nb1"),
            metadata=gateway.metadata() + request_id,
        )
    )

    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == "the execution service is unavailable, try again"
    assert "127.0.0.1" not in str(rpc_status.from_call(error))  # type: ignore[arg-type]
    assert isinstance(detail_of(error, RetryInfo()), RetryInfo)
    info = detail_of(error, RequestInfo())
    assert isinstance(info, RequestInfo)
    assert info.request_id == "req-down"


async def test_deeply_nested_json_on_a_socket_is_invalid_argument(
    gateway: Gateway,
) -> None:
    notebook = await gateway.notebook()

    async with gateway.socket(notebook.id) as socket:
        await receive(socket)
        await socket.send(DEEP_JSON)
        reply = await receive_until(socket, "reply")
        await socket.send(json.dumps({"type": "ping", "id": "p1"}))
        pong = await receive_until(socket, "pong")

    assert reply["error"]["code"] == "INVALID_ARGUMENT"
    assert pong["id"] == "p1"


async def test_deeply_nested_auth_message_is_refused_as_unauthorized(
    gateway: Gateway,
) -> None:
    async with connect(gateway.ws_url("nb1"), max_size=None) as socket:
        await socket.send(DEEP_JSON)
        with pytest.raises(ConnectionClosed):
            await receive(socket)

    assert socket.close_code == 4401


@pytest.mark.parametrize("notebook_id", ["a%00b", "%C3%A9", "a" * 65])
async def test_socket_on_a_bad_notebook_id_closes_as_bad_request(
    gateway: Gateway, notebook_id: str
) -> None:
    async with connect(gateway.ws_url(notebook_id)) as socket:
        with pytest.raises(ConnectionClosed):
            await receive(socket)

    assert socket.close_code == 4400
    assert "notebook_id" in (socket.close_reason or "")
