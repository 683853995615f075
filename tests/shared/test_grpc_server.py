"""Tests for services.shared.grpc_server: error mapping, health, reflection, serving."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.rpc.error_details_pb2 import BadRequest, ErrorInfo
from grpc_health.v1 import health_pb2

from reflow.notebook.v1 import notebook_pb2_grpc
from services.shared.errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ServiceError,
)
from services.shared.grpc_server import create_server, serve
from services.shared.healthcheck import CHECK_METHOD
from tests.shared.echo import (
    SERVICE,
    Context,
    Echo,
    collect,
    echo_stub,
    requests_of,
    rich_status,
    running_server,
    text,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

NOTEBOOK_SERVICE = "reflow.notebook.v1.NotebookService"


async def fail_not_found(request: Any, context: Context) -> Any:
    raise NotFound(f"notebook {request.value!r} does not exist")


async def fail_invalid(request: Any, context: Context) -> Any:
    raise InvalidArgument(
        "cell is invalid",
        field_violations=[("cells[0].code", "must not be empty")],
    )


async def fail_with_revision(request: Any, context: Context) -> Any:
    raise Aborted("notebook 'nb1' changed", current_revision=7)


async def fail_unexpectedly(request: Any, context: Context) -> Any:
    raise KeyError("secret-internal-detail")


async def abort_deliberately(request: Any, context: Context) -> Any:
    await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not yours")


async def one_word_then_fail(request: Any, context: Context) -> AsyncIterator[Any]:
    yield text("first")
    raise FailedPrecondition("kernel is restarting")


async def one_word_then_crash(request: Any, context: Context) -> AsyncIterator[Any]:
    yield text("first")
    raise RuntimeError("secret-internal-detail")


async def read_then_fail(requests: AsyncIterator[Any], context: Context) -> Any:
    async for _ in requests:
        pass
    raise NotFound("cell 'c9' does not exist")


async def echo_first_then_fail(
    requests: AsyncIterator[Any], context: Context
) -> AsyncIterator[Any]:
    async for request in requests:
        yield request
        raise NotFound("cell 'c9' does not exist")


def error_details(error: grpc.aio.AioRpcError) -> tuple[ErrorInfo, BadRequest]:
    """The ErrorInfo and BadRequest details of ``error``'s rich status."""
    status = rich_status(error)
    info, bad_request = ErrorInfo(), BadRequest()
    for detail in status.details:
        if not detail.Unpack(info):
            detail.Unpack(bad_request)
    return info, bad_request


def health_check(
    channel: grpc.aio.Channel,
) -> grpc.aio.UnaryUnaryMultiCallable[
    health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
]:
    return channel.unary_unary(
        CHECK_METHOD,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )


# -- domain errors --------------------------------------------------------


async def test_domain_error_gets_its_status_code_and_message() -> None:
    async with echo_stub(Echo(unary_unary=fail_not_found)) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.unary_unary(text("nb1"))

    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert error.value.details() == "notebook 'nb1' does not exist"


async def test_domain_error_carries_error_info_with_class_reason() -> None:
    async with echo_stub(Echo(unary_unary=fail_not_found)) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.unary_unary(text("nb1"))

    info, _ = error_details(error.value)
    assert (info.reason, info.domain) == ("NOT_FOUND", "reflow")


async def test_aborted_error_info_carries_current_revision() -> None:
    async with echo_stub(Echo(unary_unary=fail_with_revision)) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.unary_unary(text("nb1"))

    info, _ = error_details(error.value)
    assert error.value.code() == grpc.StatusCode.ABORTED
    assert dict(info.metadata) == {"current_revision": "7"}


async def test_invalid_argument_carries_bad_request_violations() -> None:
    async with echo_stub(Echo(unary_unary=fail_invalid)) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.unary_unary(text("x"))

    _, bad_request = error_details(error.value)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("cells[0].code", "must not be empty")
    ]


async def test_bare_service_error_is_unknown_with_its_message() -> None:
    async def fail_uncategorised(request: Any, context: Context) -> Any:
        raise ServiceError("something odd")

    async with echo_stub(Echo(unary_unary=fail_uncategorised)) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.unary_unary(text("x"))

    assert (error.value.code(), error.value.details()) == (
        grpc.StatusCode.UNKNOWN,
        "something odd",
    )


async def test_server_stream_delivers_messages_before_a_domain_error() -> None:
    received: list[str] = []
    async with echo_stub(Echo(unary_stream=one_word_then_fail)) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await collect(stub.unary_stream(text("x")), into=received)

    assert received == ["first"]
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_server_stream_domain_error_carries_error_info() -> None:
    async with echo_stub(Echo(unary_stream=one_word_then_fail)) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await collect(stub.unary_stream(text("x")), into=[])

    info, _ = error_details(error.value)
    assert info.reason == "FAILED_PRECONDITION"


async def test_client_stream_domain_error_is_mapped() -> None:
    async with echo_stub(Echo(stream_unary=read_then_fail)) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.stream_unary(requests_of("a", "b"))

    assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_bidi_stream_delivers_messages_before_a_domain_error() -> None:
    received: list[str] = []
    async with echo_stub(Echo(stream_stream=echo_first_then_fail)) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await collect(stub.stream_stream(requests_of("a", "b")), into=received)

    assert received == ["a"]
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_deliberate_abort_keeps_its_status() -> None:
    async with echo_stub(Echo(unary_unary=abort_deliberately)) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.unary_unary(text("x"))

    assert (error.value.code(), error.value.details()) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "not yours",
    )


# -- unexpected exceptions --------------------------------------------------

REQUEST_ID = (("x-request-id", "req-1"),)


async def test_unexpected_exception_is_internal_error_without_its_text() -> None:
    async with echo_stub(Echo(unary_unary=fail_unexpectedly)) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.unary_unary(text("x"), metadata=REQUEST_ID)

    assert (error.value.code(), error.value.details()) == (
        grpc.StatusCode.INTERNAL,
        "internal error (request id req-1)",
    )
    assert "secret-internal-detail" not in str(error.value)


async def test_unexpected_exception_traceback_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with echo_stub(Echo(unary_unary=fail_unexpectedly)) as stub:
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.unary_unary(text("x"), metadata=REQUEST_ID)

    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == (
        f"unhandled error in /{SERVICE}/UnaryUnary (request req-1)"
    )
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], KeyError)


async def test_unexpected_exception_mid_stream_is_internal_after_the_messages() -> None:
    received: list[str] = []
    async with echo_stub(Echo(unary_stream=one_word_then_crash)) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await collect(
                stub.unary_stream(text("x"), metadata=REQUEST_ID), into=received
            )

    assert received == ["first"]
    assert (error.value.code(), error.value.details()) == (
        grpc.StatusCode.INTERNAL,
        "internal error (request id req-1)",
    )


async def test_unexpected_exception_mid_stream_names_the_method_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with echo_stub(Echo(unary_stream=one_word_then_crash)) as stub:
        with pytest.raises(grpc.aio.AioRpcError):
            await collect(stub.unary_stream(text("x"), metadata=REQUEST_ID), into=[])

    assert f"unhandled error in /{SERVICE}/UnaryStream (request req-1)" in (
        caplog.messages
    )


# -- create_server: health, reflection, binding ----------------------------


async def test_health_is_serving_for_the_whole_server() -> None:
    async with (
        running_server([Echo().add_to]) as (_, port),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        response = await health_check(channel)(health_pb2.HealthCheckRequest())

    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_health_is_serving_for_each_named_service() -> None:
    async with (
        running_server([Echo().add_to]) as (_, port),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        response = await health_check(channel)(
            health_pb2.HealthCheckRequest(service=SERVICE)
        )

    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_create_server_reports_the_port_it_bound() -> None:
    server, port = create_server([Echo().add_to], "127.0.0.1:0", [SERVICE])

    assert port > 0
    await server.stop(None)


async def test_binding_a_port_in_use_fails() -> None:
    async with running_server([Echo().add_to]) as (_, port):
        with pytest.raises(RuntimeError, match="bind"):
            create_server([Echo().add_to], f"127.0.0.1:{port}", [SERVICE])


# -- serve -------------------------------------------------------------------


async def test_serve_stops_on_sigterm() -> None:
    server, port = create_server([Echo().add_to], "127.0.0.1:0", [SERVICE])
    serving = asyncio.create_task(serve(server, grace_s=1.0))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await health_check(channel)(
            health_pb2.HealthCheckRequest(), wait_for_ready=True
        )

    os.kill(os.getpid(), signal.SIGTERM)

    await asyncio.wait_for(serving, timeout=10)


async def test_serve_reports_not_serving_when_draining() -> None:
    server, port = create_server([Echo().add_to], "127.0.0.1:0", [SERVICE])
    serving = asyncio.create_task(serve(server, grace_s=1.0))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        watch = channel.unary_stream(
            "/grpc.health.v1.Health/Watch",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )(health_pb2.HealthCheckRequest(service=SERVICE), wait_for_ready=True)
        statuses = aiter(watch)
        first = await anext(statuses)
        os.kill(os.getpid(), signal.SIGTERM)
        second = await anext(statuses)
    await asyncio.wait_for(serving, timeout=10)

    assert [first.status, second.status] == [
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    ]


# -- grpcurl, against a real contract -------------------------------------------


def grpcurl_path() -> str:
    bundled = Path(sys.prefix) / "bin" / "grpcurl"
    found = str(bundled) if bundled.exists() else shutil.which("grpcurl")
    if found is None:
        pytest.fail("grpcurl is not installed: run `make install`")
    return found


async def grpcurl(port: int, *args: str) -> str:
    """Run grpcurl against 127.0.0.1:``port``; its stdout, or fail the test."""
    process = await asyncio.create_subprocess_exec(
        grpcurl_path(),
        "-plaintext",
        f"127.0.0.1:{port}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


def add_bare_notebook_service(server: grpc.aio.Server) -> None:
    # The bare base class: every RPC is UNIMPLEMENTED, which is all
    # reflection needs.
    servicer = notebook_pb2_grpc.NotebookServiceServicer()  # type: ignore[abstract]
    notebook_pb2_grpc.add_NotebookServiceServicer_to_server(servicer, server)


async def test_grpcurl_lists_service_health_and_reflection() -> None:
    async with running_server([add_bare_notebook_service], [NOTEBOOK_SERVICE]) as (
        _,
        port,
    ):
        listed = (await grpcurl(port, "list")).split()

    assert {
        NOTEBOOK_SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= set(listed)


async def test_grpcurl_describe_shows_rpc_comments() -> None:
    async with running_server([add_bare_notebook_service], [NOTEBOOK_SERVICE]) as (
        _,
        port,
    ):
        described = await grpcurl(port, "describe", NOTEBOOK_SERVICE)

    assert "// Returns one notebook with all its cells" in described


async def test_grpcurl_health_check_answers_serving() -> None:
    async with running_server([add_bare_notebook_service], [NOTEBOOK_SERVICE]) as (
        _,
        port,
    ):
        answer = await grpcurl(port, "grpc.health.v1.Health/Check")

    assert '"status": "SERVING"' in answer
