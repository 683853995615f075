"""Tests for services.shared.interceptor: decoding, request ids, details."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.rpc.error_details_pb2 import BadRequest, RequestInfo, RetryInfo

from services.shared.auth import InternalTokens, current_user
from services.shared.errors import Unavailable
from services.shared.grpc_client import bearer_metadata, open_channel
from services.shared.interceptor import current_request_id
from tests.shared.echo import (
    SERVICE,
    Context,
    Echo,
    echo_stub,
    rich_status,
    running_server,
    text,
)

if TYPE_CHECKING:
    from google.protobuf.message import Message

TRUNCATED = b"\x0a\x05ab"  # field 1, length 5, only 2 bytes follow
INVALID_UTF8 = b"\x0a\x02\xff\xfe"  # field 1 (a string), bytes that are not UTF-8


def detail(error: grpc.aio.AioRpcError, message: Message) -> Message | None:
    """The first detail of ``error`` of ``message``'s type, unpacked into it."""
    for packed in rich_status(error).details:
        if packed.Unpack(message):
            return message
    return None


async def raw_call(
    port: int, method: str, body: bytes, metadata: Any = ()
) -> grpc.aio.AioRpcError:
    """Call ``method`` with ``body`` as the request's bytes; the error it fails with."""
    async with open_channel(f"127.0.0.1:{port}", retry=False) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            f"/{SERVICE}/{method}"
        )
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call(body, metadata=metadata)
    return error.value


async def whoami_with_request(request: Any, context: Context) -> Any:
    return text(f"{current_user()} {current_request_id()}")


async def fail_unavailable(request: Any, context: Context) -> Any:
    raise Unavailable("the kernel is starting")


@pytest.mark.parametrize("body", [TRUNCATED, INVALID_UTF8], ids=["truncated", "utf8"])
async def test_undecodable_request_is_invalid_argument_naming_the_request(
    body: bytes,
) -> None:
    async with running_server([Echo().add_to]) as (_, port):
        error = await raw_call(port, "UnaryUnary", body)

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = detail(error, BadRequest())
    assert isinstance(violations, BadRequest)
    assert [v.field for v in violations.field_violations] == ["request"]


async def test_undecodable_request_is_not_logged_as_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with running_server([Echo().add_to]) as (_, port):
        await raw_call(port, "UnaryUnary", TRUNCATED)

    assert [r for r in caplog.records if r.levelno >= 30] == []


async def test_undecodable_request_to_a_stream_is_invalid_argument() -> None:
    async with running_server([Echo().add_to]) as (_, port):
        error = await raw_call(port, "UnaryStream", INVALID_UTF8)

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_internal_token_carries_the_request_id(tokens: InternalTokens) -> None:
    token = tokens.token_for("ada", "req-42")

    async with echo_stub(
        Echo(unary_unary=whoami_with_request), token_verifier=tokens
    ) as stub:
        reply = await stub.unary_unary(text("x"), metadata=bearer_metadata(token))

    assert reply.value == "ada req-42"


async def test_errors_carry_the_request_id_the_caller_sent() -> None:
    async with echo_stub(Echo(unary_unary=fail_unavailable)) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.unary_unary(text("x"), metadata=(("x-request-id", "req-7"),))

    info = detail(error.value, RequestInfo())
    assert isinstance(info, RequestInfo)
    assert info.request_id == "req-7"


async def test_a_malformed_request_id_is_replaced() -> None:
    async with echo_stub(Echo(unary_unary=fail_unavailable)) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.unary_unary(text("x"), metadata=(("x-request-id", "a b;c"),))

    info = detail(error.value, RequestInfo())
    assert isinstance(info, RequestInfo)
    assert info.request_id not in ("", "a b;c")


async def test_unavailable_says_when_to_retry() -> None:
    async with echo_stub(Echo(unary_unary=fail_unavailable)) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.unary_unary(text("x"))

    retry = detail(error.value, RetryInfo())
    assert isinstance(retry, RetryInfo)
    assert retry.retry_delay.seconds == 1
