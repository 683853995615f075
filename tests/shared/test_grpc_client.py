"""Tests for services.shared.grpc_client: retries, metadata, statuses to errors."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from services.shared.auth import current_token, current_user
from services.shared.errors import (
    Aborted,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    ServiceError,
    Unavailable,
)
from services.shared.grpc_client import (
    bearer_metadata,
    open_channel,
    rpc_errors_as_service_errors,
)
from services.shared.status import ERROR_CLASSES
from tests.shared.echo import (
    Context,
    Echo,
    EchoStub,
    collect,
    echo_stub,
    running_server,
    text,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from services.shared.auth import InternalTokens


async def fail_not_found(request: Any, context: Context) -> Any:
    raise NotFound("notebook 'nb1' does not exist", reason="NOTEBOOK_NOT_FOUND")


async def fail_invalid(request: Any, context: Context) -> Any:
    raise InvalidArgument("bad cell", field_violations=[("code", "is empty")])


async def fail_stale(request: Any, context: Context) -> Any:
    raise Aborted("notebook 'nb1' changed", current_revision=12)


async def fail_internal(request: Any, context: Context) -> Any:
    raise ZeroDivisionError


async def one_then_not_found(request: Any, context: Context) -> AsyncIterator[Any]:
    yield text("first")
    raise NotFound("cell 'c1' does not exist")


class Flaky:
    """A handler that is UNAVAILABLE ``failures`` times, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0

    async def handle(self, request: Any, context: Context) -> Any:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise Unavailable("kernel is starting")
        return request


async def call_mapped(stub: EchoStub) -> None:
    async with rpc_errors_as_service_errors("echo"):
        await stub.unary_unary(text("x"))


# -- rpc_errors_as_service_errors ----------------------------------------------


async def test_not_found_status_becomes_not_found_with_its_message() -> None:
    async with echo_stub(Echo(unary_unary=fail_not_found)) as stub:
        with pytest.raises(NotFound) as error:
            await call_mapped(stub)

    assert str(error.value) == "notebook 'nb1' does not exist"


async def test_error_info_reason_survives_the_round_trip() -> None:
    async with echo_stub(Echo(unary_unary=fail_not_found)) as stub:
        with pytest.raises(NotFound) as error:
            await call_mapped(stub)

    assert error.value.reason == "NOTEBOOK_NOT_FOUND"


async def test_field_violations_survive_the_round_trip() -> None:
    async with echo_stub(Echo(unary_unary=fail_invalid)) as stub:
        with pytest.raises(InvalidArgument) as error:
            await call_mapped(stub)

    assert error.value.field_violations == [("code", "is empty")]


async def test_current_revision_survives_the_round_trip() -> None:
    async with echo_stub(Echo(unary_unary=fail_stale)) as stub:
        with pytest.raises(Aborted) as error:
            await call_mapped(stub)

    assert error.value.current_revision == 12


@pytest.mark.parametrize(
    "category", list(ERROR_CLASSES.values()), ids=lambda c: c.__name__
)
async def test_every_category_comes_back_as_itself(
    category: type[ServiceError],
) -> None:
    async def fail(request: Any, context: Context) -> Any:
        raise category("it went wrong")

    async with echo_stub(Echo(unary_unary=fail)) as stub:
        with pytest.raises(ServiceError) as error:
            await call_mapped(stub)

    assert type(error.value) is category


async def test_mapped_error_keeps_the_rpc_error_as_its_cause() -> None:
    async with echo_stub(Echo(unary_unary=fail_not_found)) as stub:
        with pytest.raises(NotFound) as error:
            await call_mapped(stub)

    assert isinstance(error.value.__cause__, grpc.aio.AioRpcError)


async def test_internal_status_stays_an_rpc_error() -> None:
    async with echo_stub(Echo(unary_unary=fail_internal)) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call_mapped(stub)

    assert error.value.code() == grpc.StatusCode.INTERNAL


async def test_stream_failure_is_mapped_after_the_messages() -> None:
    received: list[str] = []
    async with echo_stub(Echo(unary_stream=one_then_not_found)) as stub:
        with pytest.raises(NotFound):
            async with rpc_errors_as_service_errors("echo"):
                await collect(stub.unary_stream(text("x")), into=received)

    assert received == ["first"]


async def test_client_deadline_becomes_deadline_exceeded() -> None:
    never = asyncio.Event()

    async def wait_forever(request: Any, context: Context) -> Any:
        await never.wait()
        return request

    async with echo_stub(Echo(unary_unary=wait_forever)) as stub:
        with pytest.raises(DeadlineExceeded):
            async with rpc_errors_as_service_errors("echo"):
                await stub.unary_unary(text("x"), timeout=0.05)


# -- open_channel -------------------------------------------------------------


async def test_retry_policy_retries_unavailable() -> None:
    flaky = Flaky(failures=2)
    async with echo_stub(Echo(unary_unary=flaky.handle), retry=True) as stub:
        reply = await stub.unary_unary(text("x"))

    assert (reply.value, flaky.attempts) == ("x", 3)


async def test_retry_policy_gives_up_after_four_attempts() -> None:
    flaky = Flaky(failures=10)
    async with echo_stub(Echo(unary_unary=flaky.handle), retry=True) as stub:
        with pytest.raises(Unavailable):
            await call_mapped(stub)

    assert flaky.attempts == 4


async def test_channel_without_retry_fails_at_the_first_unavailable() -> None:
    flaky = Flaky(failures=1)
    async with echo_stub(Echo(unary_unary=flaky.handle), retry=False) as stub:
        with pytest.raises(Unavailable):
            await call_mapped(stub)

    assert flaky.attempts == 1


async def test_retry_policy_does_not_retry_other_codes() -> None:
    attempts: list[str] = []

    async def fail_once(request: Any, context: Context) -> Any:
        attempts.append(request.value)
        raise NotFound("gone")

    async with echo_stub(Echo(unary_unary=fail_once), retry=True) as stub:
        with pytest.raises(NotFound):
            await call_mapped(stub)

    assert attempts == ["x"]


# -- bearer_metadata ----------------------------------------------------------


def test_bearer_metadata_presents_the_token() -> None:
    assert bearer_metadata("abc") == (("authorization", "Bearer abc"),)


async def test_forwarded_token_names_the_same_user_downstream(
    tokens: InternalTokens,
) -> None:
    async def whoami(request: Any, context: Context) -> Any:
        return text(current_user())

    async with (
        running_server([Echo(unary_unary=whoami).add_to], token_verifier=tokens) as (
            _,
            downstream_port,
        ),
        open_channel(f"127.0.0.1:{downstream_port}") as downstream,
    ):

        async def forward(request: Any, context: Context) -> Any:
            return await EchoStub(downstream).unary_unary(
                request, metadata=bearer_metadata(current_token())
            )

        async with echo_stub(Echo(unary_unary=forward), token_verifier=tokens) as stub:
            reply = await stub.unary_unary(
                text("x"), metadata=bearer_metadata(tokens.mint("ada"))
            )

    assert reply.value == "ada"


async def test_a_service_that_is_down_is_unavailable_without_its_address() -> None:
    async with running_server([Echo().add_to]) as (server, port):
        pass  # stopped on leaving: nothing listens on the port any more
    async with open_channel(f"127.0.0.1:{port}", retry=False) as channel:
        stub = EchoStub(channel)
        with pytest.raises(Unavailable) as error:
            async with rpc_errors_as_service_errors("echo"):
                await stub.unary_unary(text("x"))

    assert error.value.message == "the echo service is unavailable, try again"
    assert "127.0.0.1" not in str(error.value)
