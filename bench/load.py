"""UpdateCell under concurrent clients, beside a do-nothing service (same Envoy).

Each side is a ``Trial`` whose ``once`` is one round: ``clients`` clients,
each on a gRPC channel (an HTTP/2 connection) of its own, each making
``per_client`` calls one after another, all clients at once. ``once``
returns the round's throughput (calls per second of wall time) and keeps
every call's latency, so ``alternate`` takes whole rounds turn about
between our UpdateCell and the idle service.

* Ours: every client edits its own cell of its own notebook (``x = 1``,
  ``x = 2``, ... so that each call stores a change).
* The floor: ``bench.idle_service``'s method with a request of the same
  size and the same token, so Envoy and HTTP/2 do the same work.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc

from bench.idle_service import METHOD
from bench.measures import TIMEOUT_S, Stopwatch
from reflow.notebook.v1 import notebook_pb2, notebook_pb2_grpc

if TYPE_CHECKING:
    from bench.reflow_side import Client
    from bench.stack import Endpoints


class _Load:
    """Rounds of concurrent calls; what each client calls is the subclass's."""

    def __init__(self, endpoints: Endpoints, clients: int, per_client: int) -> None:
        self.endpoints = endpoints
        self.clients = clients
        self.per_client = per_client
        self.metadata = (("authorization", f"Bearer {endpoints.token}"),)
        self.channels: list[grpc.aio.Channel] = []
        self.latencies_ms: list[float] = []

    def channel(self, address: str) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(address)
        self.channels.append(channel)
        return channel

    async def connect(self) -> None:
        """Make each client's channel and what it works on."""
        raise NotImplementedError

    async def call(self, client: int, sequence: int) -> None:
        raise NotImplementedError

    async def prepare(self) -> None:
        await self.connect()
        # One untimed round opens every connection and warms both ends.
        await self.once()
        self.latencies_ms.clear()

    async def _client(self, client: int) -> None:
        for sequence in range(self.per_client):
            clock = Stopwatch()
            await self.call(client, sequence)
            self.latencies_ms.append(clock.ms())

    async def once(self) -> float:
        clock = Stopwatch()
        await asyncio.gather(*(self._client(c) for c in range(self.clients)))
        return self.clients * self.per_client / (clock.ms() / 1e3)

    async def finish(self) -> None:
        for channel in self.channels:
            await channel.close()


class UpdateCellLoad(_Load):
    """Our side: UpdateCell of each client's own cell, through the stack's front."""

    def __init__(
        self, client: Client, endpoints: Endpoints, clients: int, per_client: int
    ) -> None:
        super().__init__(endpoints, clients, per_client)
        self.client = client
        self.stubs: list[notebook_pb2_grpc.NotebookServiceAsyncStub] = []
        self.cells: list[tuple[str, str]] = []

    async def connect(self) -> None:
        for index in range(self.clients):
            notebook_id, (cell,) = await self.client.notebook_with(
                f"update load {index}", "x = 0"
            )
            self.cells.append((notebook_id, cell))
            stub: notebook_pb2_grpc.NotebookServiceAsyncStub = (
                notebook_pb2_grpc.NotebookServiceStub(
                    self.channel(self.endpoints.notebook)
                )
            )
            self.stubs.append(stub)

    async def call(self, client: int, sequence: int) -> None:
        notebook_id, cell = self.cells[client]
        await self.stubs[client].UpdateCell(
            notebook_pb2.UpdateCellRequest(
                notebook_id=notebook_id, cell_id=cell, code=f"x = {sequence}"
            ),
            metadata=self.metadata,
            timeout=TIMEOUT_S,
        )

    async def finish(self) -> None:
        try:
            for notebook_id, _ in self.cells:
                await self.client.delete_notebook(notebook_id)
        finally:
            await super().finish()


class IdleLoad(_Load):
    """The floor: the do-nothing method, reached the way UpdateCell is."""

    def __init__(self, endpoints: Endpoints, clients: int, per_client: int) -> None:
        super().__init__(endpoints, clients, per_client)
        self.methods: list[grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]] = []
        # An UpdateCell request's size, so both sides send alike.
        self.request = notebook_pb2.UpdateCellRequest(
            notebook_id="n" * 32, cell_id="c" * 32, code="x = 100"
        ).SerializeToString()

    async def connect(self) -> None:
        for _ in range(self.clients):
            self.methods.append(self.channel(self.endpoints.idle).unary_unary(METHOD))

    async def call(self, client: int, sequence: int) -> None:
        await self.methods[client](
            self.request, metadata=self.metadata, timeout=TIMEOUT_S
        )
