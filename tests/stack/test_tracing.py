"""Tracing across processes: one RunCells, one trace id, from Envoy to the notebook.

The stack runs with span export on (the standard ``OTEL_*`` variables) to an
OTLP receiver in this test (``otlp_receiver.py``); ``make run`` then has
Envoy export its spans there too. The client sends a W3C ``traceparent``
through the real Envoy; Envoy, the gateway, the execution service and the
notebook service (which the execution service calls) must each export spans
of that very trace, each hop the parent of the next.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

import grpc

from reflow.execution.v1 import execution_pb2, execution_pb2_grpc
from reflow.notebook.v1 import notebook_pb2, notebook_pb2_grpc
from tests.stack.otlp_receiver import running_receiver
from tests.stack.stack_process import READY_LINE, launch, stack_env

if TYPE_CHECKING:
    from pathlib import Path

    from tests.stack.otlp_receiver import ReceivedSpan

START_TIMEOUT_S: Final = 90.0
SPANS_TIMEOUT_S: Final = 60.0
TRACE_ID: Final = "5b8efff798038103d269b633813fc60c"
CLIENT_SPAN_ID: Final = "eee19b7ec3c1b174"
TRACED: Final = {
    "reflow-envoy",
    "reflow-gateway",
    "reflow-execution",
    "reflow-notebook",
}


def is_whole(spans: list[ReceivedSpan]) -> bool:
    """Whether the trace reached every service and each span's parent is in."""
    traced = [span for span in spans if span.trace_id == TRACE_ID]
    known = {CLIENT_SPAN_ID} | {span.span_id for span in traced}
    return {span.service for span in traced} >= TRACED and all(
        span.parent_span_id in known for span in traced
    )


async def run_traced(target: str, token: str) -> list[str]:
    """Create a notebook with ``x = 1`` and run it in the trace; the event kinds."""
    metadata = (("authorization", f"Bearer {token}"),)
    traced = (*metadata, ("traceparent", f"00-{TRACE_ID}-{CLIENT_SPAN_ID}-01"))
    async with grpc.aio.insecure_channel(target) as channel:
        notebooks = notebook_pb2_grpc.NotebookServiceStub(channel)
        execution = execution_pb2_grpc.ExecutionServiceStub(channel)
        created = await notebooks.CreateNotebook(
            notebook_pb2.CreateNotebookRequest(name="traced"), metadata=metadata
        )
        notebook_id = created.notebook.id
        await notebooks.CreateCell(
            notebook_pb2.CreateCellRequest(notebook_id=notebook_id, code="x = 1"),
            metadata=metadata,
        )
        run = execution.RunCells(
            execution_pb2.RunCellsRequest(notebook_id=notebook_id),
            metadata=traced,
            timeout=60,
        )
        return [reply.event.WhichOneof("event") or "" async for reply in run]


async def test_one_run_is_one_trace_through_envoy_gateway_execution_and_notebook(
    tmp_path: Path,
) -> None:
    async with running_receiver() as (receiver, port):
        env = stack_env(
            tmp_path,
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                "OTEL_BSP_SCHEDULE_DELAY": "100",
            },
        )
        stack = launch(env)
        try:
            await asyncio.to_thread(stack.wait_for_line, READY_LINE, START_TIMEOUT_S)
            token = await asyncio.to_thread(stack.token, "tracy")
            events = await run_traced(stack.target, token)
            spans = await receiver.wait_for(is_whole, SPANS_TIMEOUT_S)
        finally:
            await asyncio.to_thread(stack.close)

    assert events[-1] == "run_finished"
    traced = [span for span in spans if span.trace_id == TRACE_ID]
    by_id = {span.span_id: span for span in traced}
    (envoy_run,) = [span for span in traced if span.parent_span_id == CLIENT_SPAN_ID]
    assert envoy_run.service == "reflow-envoy"
    (gateway_run,) = [
        span
        for span in traced
        if span.service == "reflow-gateway" and span.parent_span_id == envoy_run.span_id
    ]
    assert gateway_run.name == "/reflow.execution.v1.ExecutionService/RunCells"
    notebook_spans = [span for span in traced if span.service == "reflow-notebook"]
    assert all(
        by_id[span.parent_span_id].service == "reflow-execution"
        for span in notebook_spans
    )
