"""OpenTelemetry tracing: W3C trace context on every hop, spans exported on demand.

Two modes, chosen once per process by ``configure``:

* **Exporting** (an exporter named by ``OTEL_TRACES_EXPORTER``, or an OTLP
  endpoint in ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``): the SDK's ``TracerProvider``
  with a batch processor per exporter, and the OpenTelemetry gRPC
  instrumentation on every server (``server_interceptors``) and every
  channel (``client_interceptors``), so each RPC is a server span and each
  downstream call a client span. Everything else is the SDK's own
  environment handling: exporter names and the OTLP protocol
  (``OTEL_EXPORTER_OTLP_PROTOCOL``), endpoint, headers and timeouts, the
  sampler (``OTEL_TRACES_SAMPLER``), batching (``OTEL_BSP_*``), the resource
  (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``; the service name
  defaults to ``reflow-<service>``). ``OTEL_SDK_DISABLED=true`` wins.
* **Not exporting** (the default): no spans and no instrumentation, and not
  the OpenTelemetry API either: extracting and injecting through it costs
  some 10-20 µs a hop (measured), a few percent of the ``x = 1`` round trip
  for spans nobody receives. The W3C ``traceparent`` header still travels:
  the server guard keeps the caller's (``enter_remote_context``; a call
  that brings none, or a malformed one, gets fresh ids) and every outgoing
  call carries it on unchanged (``grpc_client.bearer_metadata``). Checking
  and passing on that one fixed-format header is done here, by a pattern.

Either way a request keeps one trace id from Envoy to the last service, and
every JSON log line written while serving it names it (``trace_id``,
``span_id``).
"""

from __future__ import annotations

import contextvars
import logging
import os
import random
import re
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider

if TYPE_CHECKING:
    from collections.abc import Mapping, MutableMapping, Sequence

    import grpc

logger = logging.getLogger(__name__)

ENDPOINT_VARIABLES: Final = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)
SDK_VARIABLES: Final = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_RESOURCE_ATTRIBUTES",
)
"""The OpenTelemetry variables a deployment passes to every service, read by
the SDK (and ``exporter_names``), never by a service's Settings."""
TRACEPARENT: Final = "traceparent"
# Version 00 of https://www.w3.org/TR/trace-context/#traceparent-header; an
# all-zero trace or parent id is invalid.
_TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
_traceparent: contextvars.ContextVar[str] = contextvars.ContextVar(
    "reflow_traceparent", default=""
)


def exporter_names(env: Mapping[str, str] = os.environ) -> list[str]:
    """The trace exporters the environment asks for; [] means tracing is off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = env.get("OTEL_TRACES_EXPORTER", "").strip()
    if names:
        if names.lower() == "none":
            return []
        return [name.strip() for name in names.split(",") if name.strip()]
    return ["otlp"] if any(env.get(name) for name in ENDPOINT_VARIABLES) else []


def otlp_grpc_collector(env: Mapping[str, str] = os.environ) -> tuple[str, int] | None:
    """Host and port of the plaintext OTLP/gRPC collector spans go to, if any.

    For a proxy that exports spans of its own (Envoy, in ``make run``) to
    where the services send theirs. None when nothing is exported, when the
    protocol is OTLP over HTTP, or when the endpoint is https (the proxy
    would need TLS settings of its own).
    """
    if "otlp" not in exporter_names(env) and "otlp_proto_grpc" not in exporter_names(
        env
    ):
        return None
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"
    )
    endpoint = urlsplit(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or "http://localhost:4317"
    )
    if protocol.strip() != "grpc" or endpoint.scheme != "http" or not endpoint.hostname:
        return None
    return endpoint.hostname, endpoint.port or 4317


def configure(service: str, env: Mapping[str, str] = os.environ) -> bool:
    """Set up tracing for this process from ``OTEL_*``; whether spans are exported.

    Either way, log records get the current ``trace_id`` and ``span_id``.
    """
    _add_trace_ids_to_log_records()
    names = exporter_names(env)
    if not names:
        return False
    # The SDK's own lookup: entry points by name, "otlp" by its protocol.
    from opentelemetry.sdk._configuration import (  # noqa: PLC0415
        _get_exporter_entry_point,
        _import_exporters,
    )
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415

    entry_points = [_get_exporter_entry_point(name, "traces") for name in names]
    exporters, _, _ = _import_exporters(entry_points, [], [])
    resource = Resource.create()
    if not env.get("OTEL_SERVICE_NAME") and "service.name=" not in env.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        resource = resource.merge(Resource({"service.name": f"reflow-{service}"}))
    provider = TracerProvider(resource=resource)
    for exporter in exporters.values():
        provider.add_span_processor(BatchSpanProcessor(exporter()))
    trace.set_tracer_provider(provider)
    logger.info("tracing: exporting spans with %s", ", ".join(names))
    return True


def is_exporting() -> bool:
    """Whether ``configure`` turned span export (and the instrumentation) on."""
    return isinstance(trace.get_tracer_provider(), TracerProvider)


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """The OpenTelemetry server interceptor when exporting, else none."""
    if not is_exporting():
        return []
    from opentelemetry.instrumentation.grpc import (  # noqa: PLC0415
        aio_server_interceptor,
    )

    return [aio_server_interceptor()]  # type: ignore[no-untyped-call]


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """The OpenTelemetry client interceptors when exporting, else none."""
    if not is_exporting():
        return []
    from opentelemetry.instrumentation.grpc import (  # noqa: PLC0415
        aio_client_interceptors,
    )

    interceptors: list[grpc.aio.ClientInterceptor] = aio_client_interceptors()  # type: ignore[no-untyped-call]
    return interceptors


def enter_remote_context(metadata: Sequence[tuple[str, Any]] | None) -> None:
    """Keep the caller's ``traceparent`` for this RPC, unless a span is current.

    With the instrumentation (exporting), its server span is current and
    carries the context. Without, this is what keeps the trace id: the
    caller's header if well formed, else fresh ids. Not reset: the RPC's
    task ends with it.
    """
    if trace.get_current_span().get_span_context().is_valid:
        return
    header = next((v for k, v in metadata or () if k == TRACEPARENT), None)
    if not (isinstance(header, str) and _TRACEPARENT.fullmatch(header)):
        header = f"00-{random.getrandbits(128):032x}-{random.getrandbits(64):016x}-00"
    _traceparent.set(header)


def inject_context(carrier: MutableMapping[str, str]) -> None:
    """Add the current trace context (``traceparent``) to outgoing headers."""
    if trace.get_current_span().get_span_context().is_valid:
        propagate.inject(carrier)
        return
    header = _traceparent.get()
    if header:
        carrier[TRACEPARENT] = header


def current_ids() -> tuple[str, str]:
    """The current trace id and span (or parent) id in hex; "" outside a trace."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:
        return (
            trace.format_trace_id(span_context.trace_id),
            trace.format_span_id(span_context.span_id),
        )
    header = _traceparent.get()
    return (header[3:35], header[36:52]) if header else ("", "")


def _add_trace_ids_to_log_records() -> None:
    """Give every log record ``trace_id``/``span_id`` (hex; "" outside a trace)."""
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "adds_trace_ids", False):
        return

    def record_with_trace_ids(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        record.trace_id, record.span_id = current_ids()
        return record

    record_with_trace_ids.adds_trace_ids = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(record_with_trace_ids)
