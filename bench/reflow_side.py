"""Our side of the benchmark: the public gRPC API of a running stack, as a client.

Everything goes over gRPC to the addresses ``bench.stack`` yields (Envoy;
with ``--gateway`` the gateway, with ``--direct`` the services themselves),
with the token it minted, exactly as any client would: notebooks and cells
are created with NotebookService, runs are ``RunCells`` streams read until
their ``run_finished`` event, kernels are found with ``ListKernels``. A
client that tracks revisions passes the revision its last edit's reply
named as ``min_revision`` (the ``round_trip_envoy`` and chain measures). Only the
memory measure looks beyond the API, at /proc, for the PSS of the kernel
processes ``ListKernels`` names and of the zygote they were forked from.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

import grpc

from bench.measures import (
    CHAIN_LENGTH,
    IMPORT_CODE,
    INTERRUPT_AFTER_S,
    LOOP_CODE,
    PLOT_CODE,
    PLOT_SETUP_CODE,
    PRINT_CODE,
    PRINT_WARMUP_CODE,
    TIMEOUT_S,
    X_CODE,
    BenchError,
    Stopwatch,
    chain_codes,
    expected_print_text,
    png_size,
    total_pss_mib,
    zygote_pss_mib,
)
from bench.stack import zygote_pid
from reflow.execution.v1 import execution_pb2, execution_pb2_grpc
from reflow.notebook.v1 import notebook_pb2, notebook_pb2_grpc

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from bench.stack import Endpoints

NotebookStub: TypeAlias = "notebook_pb2_grpc.NotebookServiceAsyncStub"
ExecutionStub: TypeAlias = "execution_pb2_grpc.ExecutionServiceAsyncStub"
Event: TypeAlias = execution_pb2.ExecutionEvent

SUCCESS = notebook_pb2.CELL_STATUS_SUCCESS
INTERRUPTED = notebook_pb2.CELL_STATUS_INTERRUPTED
STDOUT = execution_pb2.STREAM_STDOUT


@dataclass
class Run:
    """What a run delivered, and when (ms after the request) its events came."""

    status: int = 0
    stdout: list[str] = field(default_factory=list)
    truncated: bool = False
    outputs: list[notebook_pb2.Output] = field(default_factory=list)
    results: dict[str, notebook_pb2.CellResult] = field(default_factory=dict)
    finished_ms: float = 0.0
    # When the first event of each kind arrived, ms after the request.
    arrivals: dict[str, float] = field(default_factory=dict)

    def take(self, event: Event, at_ms: float) -> None:
        kind = event.WhichOneof("event")
        if kind is not None:
            self.arrivals.setdefault(kind, at_ms)
        if kind == "stream_chunk" and event.stream_chunk.stream == STDOUT:
            self.stdout.append(event.stream_chunk.text)
            self.truncated = self.truncated or event.stream_chunk.truncated
        elif kind == "output":
            self.outputs.append(event.output)
        elif kind == "cell_finished":
            self.results[event.cell_id] = event.cell_finished.result
        elif kind == "run_finished":
            self.status = event.run_finished.status


class Client:
    """The public API of the stack, as one user."""

    def __init__(self, endpoints: Endpoints) -> None:
        self._endpoints = endpoints
        self._metadata = (("authorization", f"Bearer {endpoints.token}"),)
        self._channels: list[grpc.aio.Channel] = []
        notebook_channel = self._channel(endpoints.notebook)
        execution_channel = (
            notebook_channel
            if endpoints.execution == endpoints.notebook
            else self._channel(endpoints.execution)
        )
        self.notebooks: NotebookStub = notebook_pb2_grpc.NotebookServiceStub(
            notebook_channel
        )
        self.execution: ExecutionStub = execution_pb2_grpc.ExecutionServiceStub(
            execution_channel
        )

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(address)
        self._channels.append(channel)
        return channel

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    async def create_notebook(self, name: str) -> str:
        reply = await self.notebooks.CreateNotebook(
            notebook_pb2.CreateNotebookRequest(name=name),
            metadata=self._metadata,
            timeout=TIMEOUT_S,
        )
        return reply.notebook.id

    async def create_cell(self, notebook_id: str, code: str) -> str:
        cell_id, _ = await self.add_cell(notebook_id, code)
        return cell_id

    async def add_cell(self, notebook_id: str, code: str) -> tuple[str, int]:
        """The new cell's id and the notebook's revision after it."""
        reply = await self.notebooks.CreateCell(
            notebook_pb2.CreateCellRequest(notebook_id=notebook_id, code=code),
            metadata=self._metadata,
            timeout=TIMEOUT_S,
        )
        return reply.cell.id, reply.revision

    async def update_cell(self, notebook_id: str, cell_id: str, code: str) -> int:
        """Store the cell's new code; the notebook's revision after it."""
        reply = await self.notebooks.UpdateCell(
            notebook_pb2.UpdateCellRequest(
                notebook_id=notebook_id, cell_id=cell_id, code=code
            ),
            metadata=self._metadata,
            timeout=TIMEOUT_S,
        )
        return reply.revision

    async def delete_notebook(self, notebook_id: str) -> None:
        await self.notebooks.DeleteNotebook(
            notebook_pb2.DeleteNotebookRequest(notebook_id=notebook_id),
            metadata=self._metadata,
            timeout=TIMEOUT_S,
        )

    async def events(
        self, notebook_id: str, cell_ids: list[str], min_revision: int = 0
    ) -> AsyncIterator[Event]:
        """The run's events as they arrive, up to and with ``run_finished``."""
        call = self.execution.RunCells(
            execution_pb2.RunCellsRequest(
                notebook_id=notebook_id, cell_ids=cell_ids, min_revision=min_revision
            ),
            metadata=self._metadata,
            timeout=TIMEOUT_S,
        )
        async for reply in call:
            yield reply.event
            if reply.event.HasField("run_finished"):
                break
        # The server ends the stream after run_finished; read that end too,
        # so the next run starts on a quiet channel.
        async for _ in call:
            pass

    async def run(
        self, notebook_id: str, cell_ids: list[str], min_revision: int = 0
    ) -> Run:
        """Run the cells; stop the clock at ``run_finished``."""
        run = Run()
        clock = Stopwatch()
        async for event in self.events(notebook_id, cell_ids, min_revision):
            run.take(event, clock.ms())
        run.finished_ms = run.arrivals.get("run_finished", clock.ms())
        return run

    async def run_ok(
        self, notebook_id: str, cell_ids: list[str], min_revision: int = 0
    ) -> Run:
        run = await self.run(notebook_id, cell_ids, min_revision)
        if run.status != SUCCESS:
            details = [r.error.message for r in run.results.values() if r.error.type]
            raise BenchError(f"our run ended {run.status}: {details}")
        return run

    async def interrupt(self, notebook_id: str) -> bool:
        reply = await self.execution.InterruptKernel(
            execution_pb2.InterruptKernelRequest(notebook_id=notebook_id),
            metadata=self._metadata,
            timeout=TIMEOUT_S,
        )
        return reply.interrupted

    async def kernels(self) -> list[execution_pb2.Kernel]:
        found: list[execution_pb2.Kernel] = []
        token = ""
        while True:
            reply = await self.execution.ListKernels(
                execution_pb2.ListKernelsRequest(page_size=100, page_token=token),
                metadata=self._metadata,
                timeout=TIMEOUT_S,
            )
            found.extend(reply.kernels)
            token = reply.next_page_token
            if not token:
                return found

    async def shutdown_kernel(self, notebook_id: str) -> None:
        await self.execution.ShutdownKernel(
            execution_pb2.ShutdownKernelRequest(notebook_id=notebook_id),
            metadata=self._metadata,
            timeout=TIMEOUT_S,
        )

    async def shutdown_kernels(self) -> None:
        """Stop every kernel of ours, so the next measure starts from none."""
        for kernel in await self.kernels():
            await self.shutdown_kernel(kernel.notebook_id)

    async def notebook_with(self, name: str, *codes: str) -> tuple[str, list[str]]:
        notebook_id = await self.create_notebook(name)
        cells = [await self.create_cell(notebook_id, code) for code in codes]
        return notebook_id, cells


# -- the measures ------------------------------------------------------------


class RoundTrip:
    """RunCells on the cell ``x = 1`` until ``run_finished``.

    Notes when each kind of event arrived (medians), for a first look at
    where the time goes without a profiler.
    """

    def __init__(self, client: Client, notes: dict[str, object]) -> None:
        self.client = client
        self.notes = notes
        self.notebook_id = self.cell = ""
        self.arrivals: dict[str, list[float]] = {}

    async def prepare(self) -> None:
        self.notebook_id, (self.cell,) = await self.client.notebook_with(
            "round trip", X_CODE
        )

    async def once(self) -> float:
        run = await self.client.run_ok(self.notebook_id, [self.cell])
        for kind, at_ms in run.arrivals.items():
            self.arrivals.setdefault(kind, []).append(at_ms)
        return run.finished_ms

    async def finish(self) -> None:
        self.notes["round_trip_event_arrival_ms"] = {
            kind: statistics.median(times) for kind, times in self.arrivals.items()
        }
        await self.client.shutdown_kernels()


class RoundTripAtRevision:
    """RunCells of ``x = 1`` with ``min_revision``, through to the stream's end.

    ``min_revision`` is the revision CreateCell's reply named, as a client
    that tracks revisions sends it. The clock stops when the stream has
    ended (after ``run_finished``, the server's end of the call too).
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self.notebook_id = self.cell = ""
        self.revision = 0

    async def prepare(self) -> None:
        self.notebook_id = await self.client.create_notebook("round trip, revision")
        self.cell, self.revision = await self.client.add_cell(self.notebook_id, X_CODE)

    async def once(self) -> float:
        clock = Stopwatch()
        await self.client.run_ok(self.notebook_id, [self.cell], self.revision)
        return clock.ms()

    async def finish(self) -> None:
        await self.client.shutdown_kernels()


class Chain:
    """Edit the first of ten dependent cells and re-run it, until the stream ends.

    UpdateCell (``a0 = 1`` and ``a0 = 2`` in turn), then RunCells of that
    cell with the revision UpdateCell's reply named; the run re-runs the
    other nine after it. Both calls are timed; every cell must finish.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self.notebook_id = ""
        self.cells: list[str] = []
        self.count = 0

    async def prepare(self) -> None:
        self.notebook_id, self.cells = await self.client.notebook_with(
            "chain", *chain_codes()
        )
        await self.client.run_ok(self.notebook_id, [self.cells[0]])

    async def once(self) -> float:
        self.count += 1
        code = chain_codes(1 + self.count % 2)[0]
        clock = Stopwatch()
        revision = await self.client.update_cell(self.notebook_id, self.cells[0], code)
        run = await self.client.run_ok(self.notebook_id, [self.cells[0]], revision)
        elapsed = clock.ms()
        if len(run.results) != CHAIN_LENGTH:
            ran = len(run.results)
            raise BenchError(f"our chain ran {ran} of {CHAIN_LENGTH} cells")
        return elapsed

    async def finish(self) -> None:
        await self.client.shutdown_kernels()


class FirstRun:
    """CreateNotebook + CreateCell + RunCells until finished, a fresh notebook each."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.count = 0

    async def prepare(self) -> None:
        await self.client.shutdown_kernels()

    async def once(self) -> float:
        self.count += 1
        clock = Stopwatch()
        notebook_id, (cell,) = await self.client.notebook_with(
            f"first run {self.count}", X_CODE
        )
        await self.client.run_ok(notebook_id, [cell])
        elapsed = clock.ms()
        await self.client.shutdown_kernel(notebook_id)
        await self.client.delete_notebook(notebook_id)
        return elapsed

    async def finish(self) -> None:
        await self.client.shutdown_kernels()


class PrintLines:
    """100,000 printed lines, until ``run_finished`` with every line received."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.notebook_id = self.cell = ""
        self.expected = expected_print_text()

    async def prepare(self) -> None:
        self.notebook_id, (warm, self.cell) = await self.client.notebook_with(
            "printed lines", PRINT_WARMUP_CODE, PRINT_CODE
        )
        await self.client.run_ok(self.notebook_id, [warm])

    async def once(self) -> float:
        run = await self.client.run_ok(self.notebook_id, [self.cell])
        text = "".join(run.stdout)
        if run.truncated or text != self.expected:
            raise BenchError(
                f"our run delivered {text.count(chr(10))} of the printed lines"
                f"{' (truncated)' if run.truncated else ''}"
            )
        return run.finished_ms

    async def finish(self) -> None:
        await self.client.shutdown_kernels()


class Figure:
    """A matplotlib plot, until its image/png output and ``run_finished``."""

    def __init__(self, client: Client, notes: dict[str, object]) -> None:
        self.client = client
        self.notes = notes
        self.notebook_id = self.cell = ""

    async def prepare(self) -> None:
        self.notebook_id, (setup, self.cell) = await self.client.notebook_with(
            "figure", PLOT_SETUP_CODE, PLOT_CODE
        )
        await self.client.run_ok(self.notebook_id, [setup])
        await self.client.run_ok(self.notebook_id, [self.cell])  # fonts, first draw

    async def once(self) -> float:
        run = await self.client.run_ok(self.notebook_id, [self.cell])
        pngs = [o.binary for o in run.outputs if o.mime_type == "image/png"]
        if len(pngs) != 1:
            raise BenchError(f"our run delivered {len(pngs)} PNGs, not one")
        self.notes["png"] = {"bytes": len(pngs[0]), "size": png_size(pngs[0])}
        return run.finished_ms

    async def finish(self) -> None:
        await self.client.shutdown_kernels()


class Interrupt:
    """From InterruptKernel to the looping cell's INTERRUPTED result."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.notebook_id = self.loop = ""

    async def prepare(self) -> None:
        self.notebook_id, (warm, self.loop) = await self.client.notebook_with(
            "interrupt", X_CODE, LOOP_CODE
        )
        await self.client.run_ok(self.notebook_id, [warm])

    async def once(self) -> float:
        events: asyncio.Queue[Event | None] = asyncio.Queue()
        pump = asyncio.create_task(self._pump(events))
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await _next(events, lambda e: e.HasField("cell_started"))
                await asyncio.sleep(INTERRUPT_AFTER_S)
                clock = Stopwatch()
                if not await self.client.interrupt(self.notebook_id):
                    raise BenchError("InterruptKernel found nothing running")
                finished = await _next(events, lambda e: e.HasField("cell_finished"))
                elapsed = clock.ms()
                await pump
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        result = finished.cell_finished.result
        if result.status != INTERRUPTED or not result.error.type:
            raise BenchError(f"the loop ended {result.status}, not INTERRUPTED")
        return elapsed

    async def _pump(self, events: asyncio.Queue[Event | None]) -> None:
        try:
            async for event in self.client.events(self.notebook_id, [self.loop]):
                events.put_nowait(event)
        finally:
            events.put_nowait(None)

    async def finish(self) -> None:
        await self.client.shutdown_kernels()


async def _next(
    events: asyncio.Queue[Event | None], matches: Callable[[Event], bool]
) -> Event:
    while True:
        event = await events.get()
        if event is None:
            raise BenchError("our run ended before the expected event")
        if matches(event):
            return event


async def memory(
    client: Client, endpoints: Endpoints, count: int, notes: dict[str, object]
) -> tuple[float, float]:
    """Total PSS (MiB) of ``count`` idle kernels + the zygote, then loaded."""
    await client.shutdown_kernels()
    notebooks = [
        await client.notebook_with(f"memory {i}", X_CODE, IMPORT_CODE)
        for i in range(count)
    ]
    for notebook_id, (cell, _) in notebooks:
        await client.run_ok(notebook_id, [cell])
    pids = [kernel.pid for kernel in await client.kernels()]
    zygote = zygote_pid(endpoints.execution_pid)
    if len(pids) != count or zygote is None or not all(pids):
        raise BenchError(f"expected {count} kernels and a zygote: {pids}")
    await asyncio.sleep(0.5)  # let the kernels settle after their first run
    idle, idle_zygote = total_pss_mib([*pids, zygote]), zygote_pss_mib(zygote)
    for notebook_id, (_, imports) in notebooks:
        await client.run_ok(notebook_id, [imports])
    await asyncio.sleep(0.5)
    loaded, loaded_zygote = total_pss_mib([*pids, zygote]), zygote_pss_mib(zygote)
    notes["memory"] = {
        "kernel_pids": pids,
        "zygote_pid": zygote,
        "zygote_mib": {"idle": idle_zygote, "loaded": loaded_zygote},
    }
    await client.shutdown_kernels()
    return idle, loaded
