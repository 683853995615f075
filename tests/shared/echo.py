"""A tiny gRPC service, reflow.testing.Echo, for testing the server kit.

It is built from generic handlers over ``StringValue``, so these tests do not
depend on any Reflow contract. Each of the four RPC shapes is served by a
handler a test can replace (``Echo(unary_unary=fails_with_not_found)``), and
``echo_stub`` runs it on a real server on port 0.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import grpc
from google.protobuf.wrappers_pb2 import StringValue
from grpc_status import rpc_status

from services.shared.grpc_client import open_channel
from services.shared.grpc_server import create_server

if TYPE_CHECKING:
    from google.rpc.status_pb2 import Status

    from services.shared.auth import TokenVerifier

SERVICE = "reflow.testing.Echo"

Context = grpc.aio.ServicerContext[Any, Any]
UnaryHandler = Callable[[StringValue, Context], Awaitable[StringValue]]
ServerStreamHandler = Callable[[StringValue, Context], AsyncIterator[StringValue]]
ClientStreamHandler = Callable[
    [AsyncIterator[StringValue], Context], Awaitable[StringValue]
]
BidiHandler = Callable[
    [AsyncIterator[StringValue], Context], AsyncIterator[StringValue]
]


async def echo(request: StringValue, context: Context) -> StringValue:
    """Answers with the request."""
    return request


async def echo_words(
    request: StringValue, context: Context
) -> AsyncIterator[StringValue]:
    """Streams the request's words, one message each."""
    for word in request.value.split():
        yield StringValue(value=word)


async def join(requests: AsyncIterator[StringValue], context: Context) -> StringValue:
    """Answers with the requests' values joined by spaces."""
    return StringValue(value=" ".join([request.value async for request in requests]))


async def echo_each(
    requests: AsyncIterator[StringValue], context: Context
) -> AsyncIterator[StringValue]:
    """Answers each request with itself."""
    async for request in requests:
        yield request


@dataclass(frozen=True)
class Echo:
    """The four RPC shapes, each served by a replaceable handler."""

    unary_unary: UnaryHandler | Callable[..., Any] = echo
    unary_stream: ServerStreamHandler | Callable[..., Any] = echo_words
    stream_unary: ClientStreamHandler = join
    stream_stream: BidiHandler = echo_each

    def add_to(self, server: grpc.aio.Server) -> None:
        """Register the service on ``server``."""
        codec: dict[str, Any] = {
            "request_deserializer": StringValue.FromString,
            "response_serializer": StringValue.SerializeToString,
        }
        handlers = {
            "UnaryUnary": grpc.unary_unary_rpc_method_handler(
                self.unary_unary, **codec
            ),
            "UnaryStream": grpc.unary_stream_rpc_method_handler(
                self.unary_stream, **codec
            ),
            "StreamUnary": grpc.stream_unary_rpc_method_handler(
                self.stream_unary, **codec
            ),
            "StreamStream": grpc.stream_stream_rpc_method_handler(
                self.stream_stream, **codec
            ),
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),)
        )


class EchoStub:
    """Client side of reflow.testing.Echo."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        def path(method: str) -> str:
            return f"/{SERVICE}/{method}"

        codec: dict[str, Any] = {
            "request_serializer": StringValue.SerializeToString,
            "response_deserializer": StringValue.FromString,
        }
        self.unary_unary: grpc.aio.UnaryUnaryMultiCallable[StringValue, StringValue] = (
            channel.unary_unary(path("UnaryUnary"), **codec)
        )
        self.unary_stream: grpc.aio.UnaryStreamMultiCallable[
            StringValue, StringValue
        ] = channel.unary_stream(path("UnaryStream"), **codec)
        self.stream_unary: grpc.aio.StreamUnaryMultiCallable[
            StringValue, StringValue
        ] = channel.stream_unary(path("StreamUnary"), **codec)
        self.stream_stream: grpc.aio.StreamStreamMultiCallable[
            StringValue, StringValue
        ] = channel.stream_stream(path("StreamStream"), **codec)


@asynccontextmanager
async def running_server(
    add_servicers: Sequence[Callable[[grpc.aio.Server], None]],
    service_names: Sequence[str] = (SERVICE,),
    token_verifier: TokenVerifier | None = None,
) -> AsyncIterator[tuple[grpc.aio.Server, int]]:
    """A started ``create_server`` server on a free loopback port; stopped after."""
    server, port = create_server(
        add_servicers, "127.0.0.1:0", service_names, token_verifier=token_verifier
    )
    await server.start()
    try:
        yield server, port
    finally:
        await server.stop(None)


@asynccontextmanager
async def echo_stub(
    echo_service: Echo | None = None,
    *,
    token_verifier: TokenVerifier | None = None,
    retry: bool = False,
) -> AsyncIterator[EchoStub]:
    """A stub connected to ``echo_service`` served by ``create_server``.

    Retries are off by default so a test sees the first failure as it is.
    """
    service = echo_service or Echo()
    async with (
        running_server([service.add_to], token_verifier=token_verifier) as (_, port),
        open_channel(f"127.0.0.1:{port}", retry=retry) as channel,
    ):
        yield EchoStub(channel)


def text(value: str) -> StringValue:
    """A request carrying ``value``."""
    return StringValue(value=value)


async def requests_of(*values: str) -> AsyncIterator[StringValue]:
    """A client stream of ``values``."""
    for value in values:
        yield text(value)


async def collect(
    responses: AsyncIterator[StringValue]
    | grpc.aio.UnaryStreamCall[Any, Any]
    | grpc.aio.StreamStreamCall[Any, Any],
    into: list[str],
) -> None:
    """Append every streamed value to ``into``, so a failure part-way keeps the rest."""
    async for response in responses:
        into.append(response.value)


def rich_status(error: grpc.aio.AioRpcError) -> Status:
    """The google.rpc.Status in ``error``'s trailers, as grpcio-status decodes it."""
    # from_call reads only code(), details() and trailing_metadata(), which an
    # AioRpcError has; typeshed asks for a grpc.Call all the same.
    status: Status | None = rpc_status.from_call(cast("grpc.Call", error))
    assert status is not None, "the status has no details"
    return status
