"""Tests for services.shared.tracing: trace context carried through a service."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from services.shared import tracing
from services.shared.grpc_client import bearer_metadata
from tests.shared.echo import Echo, echo_stub, text

if TYPE_CHECKING:
    from tests.shared.echo import Context

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


async def downstream_headers(request: Any, context: Context) -> Any:
    """Answers with the headers a call it made downstream would carry."""
    return text(json.dumps(dict(bearer_metadata("t"))))


def test_no_exporter_means_no_export() -> None:
    assert tracing.exporter_names({}) == []
    assert tracing.exporter_names({"OTEL_TRACES_EXPORTER": "none"}) == []


def test_an_exporter_or_an_otlp_endpoint_turns_export_on() -> None:
    named = {"OTEL_TRACES_EXPORTER": "otlp,console"}
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}
    disabled = {**named, "OTEL_SDK_DISABLED": "true"}

    assert tracing.exporter_names(named) == ["otlp", "console"]
    assert tracing.exporter_names(endpoint) == ["otlp"]
    assert tracing.exporter_names(disabled) == []


async def test_the_callers_traceparent_travels_on_downstream() -> None:
    async with echo_stub(Echo(unary_unary=downstream_headers)) as stub:
        reply = await stub.unary_unary(
            text("x"), metadata=(("traceparent", TRACEPARENT),)
        )

    assert json.loads(reply.value)["traceparent"].split("-")[1] == TRACE_ID


async def test_a_call_without_a_traceparent_gets_fresh_ids_to_pass_on() -> None:
    async with echo_stub(Echo(unary_unary=downstream_headers)) as stub:
        first = json.loads((await stub.unary_unary(text("x"))).value)
        second = json.loads((await stub.unary_unary(text("x"))).value)

    first_id, second_id = (h["traceparent"].split("-")[1] for h in (first, second))
    assert len(first_id) == 32
    assert first_id != second_id


def test_the_otlp_grpc_collector_is_where_the_services_send_spans() -> None:
    exporting = {"OTEL_TRACES_EXPORTER": "otlp"}

    assert tracing.otlp_grpc_collector(exporting) == ("localhost", 4317)
    assert tracing.otlp_grpc_collector(
        {**exporting, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:14317"}
    ) == ("collector", 14317)


def test_no_collector_for_a_proxy_without_export_or_over_http_or_tls() -> None:
    http = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }
    tls = {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4317"}

    assert tracing.otlp_grpc_collector({}) is None
    assert tracing.otlp_grpc_collector(http) is None
    assert tracing.otlp_grpc_collector(tls) is None
