"""Tests for services.shared.metrics: every RPC counted by method and status code."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
import pytest
from prometheus_client import REGISTRY

from services.shared.config import EnvReader
from services.shared.errors import NotFound
from services.shared.metrics import metrics_port
from tests.shared.echo import SERVICE, Echo, collect, echo_stub, text

if TYPE_CHECKING:
    from tests.shared.echo import Context, UnaryHandler


def handled(method: str, code: str) -> float:
    """RPCs of the Echo service's ``method`` that ended with ``code`` so far."""
    labels = {"grpc_service": SERVICE, "grpc_method": method, "grpc_code": code}
    return REGISTRY.get_sample_value("grpc_server_handled_total", labels) or 0.0


def timed(method: str, code: str) -> float:
    labels = {"grpc_service": SERVICE, "grpc_method": method, "grpc_code": code}
    return (
        REGISTRY.get_sample_value("grpc_server_handling_seconds_count", labels) or 0.0
    )


async def fail_not_found(request: Any, context: Context) -> Any:
    raise NotFound("no such thing")


async def abort_deliberately(request: Any, context: Context) -> Any:
    await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not yours")


async def test_a_successful_call_is_counted_and_timed_as_ok() -> None:
    before = handled("UnaryUnary", "OK"), timed("UnaryUnary", "OK")

    async with echo_stub() as stub:
        await stub.unary_unary(text("x"))

    assert (handled("UnaryUnary", "OK"), timed("UnaryUnary", "OK")) == (
        before[0] + 1,
        before[1] + 1,
    )


@pytest.mark.parametrize(
    ("handler", "code"),
    [(fail_not_found, "NOT_FOUND"), (abort_deliberately, "PERMISSION_DENIED")],
    ids=["domain error", "handler's own abort"],
)
async def test_a_failed_call_is_counted_with_its_status_code(
    handler: UnaryHandler, code: str
) -> None:
    before = handled("UnaryUnary", code)

    async with echo_stub(Echo(unary_unary=handler)) as stub:
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.unary_unary(text("x"))

    assert handled("UnaryUnary", code) == before + 1


async def test_a_server_stream_is_counted_once_it_ends() -> None:
    before = handled("UnaryStream", "OK")

    async with echo_stub() as stub:
        await collect(stub.unary_stream(text("a b c")), into=[])

    assert handled("UnaryStream", "OK") == before + 1


def test_metrics_port_is_unset_unless_the_variable_says() -> None:
    unset = metrics_port(EnvReader({}, prefix="NOTEBOOK_"))
    chosen = metrics_port(EnvReader({"NOTEBOOK_METRICS_PORT": "0"}, prefix="NOTEBOOK_"))

    assert (unset, chosen) == (None, 0)
