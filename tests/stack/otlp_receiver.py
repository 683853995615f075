"""An OTLP trace receiver for tests: the collector's gRPC TraceService, in memory.

Services export spans with the real OTLP exporter (``OTEL_TRACES_EXPORTER=otlp``,
``OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:PORT``) to this server, which
implements ``opentelemetry.proto.collector.trace.v1.TraceService`` from
opentelemetry-proto and keeps each span with the name of the service that
sent it, so a test can wait until one trace has reached several services.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    Context = grpc.aio.ServicerContext[
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
    ]


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span: who sent it and where it sits in its trace."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int


class TraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps every exported span; ``wait_for`` a condition on them."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self._changed = asyncio.Condition()

    async def Export(  # noqa: N802 (the generated servicer's name)
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: Context,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            attributes = {
                a.key: a.value.string_value for a in resource_spans.resource.attributes
            }
            service = attributes.get("service.name", "")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        ReceivedSpan(
                            service,
                            span.name,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            span.kind,
                        )
                    )
        async with self._changed:
            self._changed.notify_all()
        return trace_service_pb2.ExportTraceServiceResponse()

    async def wait_for(
        self, condition: Callable[[list[ReceivedSpan]], bool], timeout_s: float
    ) -> list[ReceivedSpan]:
        """The spans once ``condition`` holds; TimeoutError if it never does."""
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(lambda: condition(self.spans))
        return list(self.spans)


@asynccontextmanager
async def running_receiver() -> AsyncIterator[tuple[TraceReceiver, int]]:
    """A receiver on a free loopback port, and that port."""
    receiver = TraceReceiver()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield receiver, port
    finally:
        await server.stop(None)
