"""Fixtures for the execution service: notebook + execution services on port 0,
real kernels (from the session's zygote, ``launcher`` in tests/conftest.py),
per-user metadata, and helpers to run cells and read events."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

import grpc
import pytest

from reflow.execution.v1 import execution_pb2, execution_pb2_grpc
from reflow.notebook.v1 import notebook_pb2, notebook_pb2_grpc
from services.execution.clients import NotebookClient
from services.execution.config import KernelSettings
from services.execution.files import WorkdirSync
from services.execution.follow import ChangeFollower
from services.execution.recorder import ResultRecorder
from services.execution.server import build_server as build_execution
from services.execution.sessions import SessionManager
from services.notebook.manager import NotebookManager
from services.notebook.server import build_server as build_notebook
from services.notebook.store.memory import MemoryStore
from services.shared.auth import InternalTokens

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator

    from services.execution.kernel.launcher import KernelLauncher

SECRET = "execution-tests-internal-secret-0123456789"
REPLICA_ID = "execution-under-test"
Metadata: TypeAlias = tuple[tuple[str, str], ...]
NotebookStub: TypeAlias = "notebook_pb2_grpc.NotebookServiceAsyncStub"
ExecutionStub: TypeAlias = "execution_pb2_grpc.ExecutionServiceAsyncStub"

TEST_KERNELS = KernelSettings(
    output_limit_bytes=256 * 1024,
    interrupt_grace_s=1.0,
    shutdown_timeout_s=2.0,
    max_kernels_per_user=6,
    max_kernels=12,
)


@dataclass
class Stack:
    """Running notebook and execution services, and clients for one user."""

    notebooks: NotebookStub
    execution: ExecutionStub
    tokens: InternalTokens
    sessions: SessionManager
    recorder: ResultRecorder
    # For services built on top of these two (the assistant's tests).
    notebook_channel: grpc.aio.Channel
    execution_channel: grpc.aio.Channel

    def metadata(self, user: str = "alice") -> Metadata:
        return (("authorization", f"Bearer {self.tokens.mint(user)}"),)

    async def notebook(self, *codes: str, user: str = "alice") -> list[str]:
        """A new notebook with these Python cells; returns [notebook_id, *cell_ids]."""
        who = self.metadata(user)
        created = await self.notebooks.CreateNotebook(
            notebook_pb2.CreateNotebookRequest(name="t"), metadata=who
        )
        ids = [created.notebook.id]
        for code in codes:
            ids.append(await self.add(ids[0], code, user=user))
        return ids

    async def add(
        self,
        notebook_id: str,
        code: str,
        user: str = "alice",
        cell_type: notebook_pb2.CellType.ValueType = notebook_pb2.CELL_TYPE_PYTHON,
        result_name: str = "",
    ) -> str:
        reply = await self.notebooks.CreateCell(
            notebook_pb2.CreateCellRequest(
                notebook_id=notebook_id,
                code=code,
                type=cell_type,
                result_name=result_name,
            ),
            metadata=self.metadata(user),
        )
        return reply.cell.id

    async def edit(self, notebook_id: str, cell_id: str, code: str) -> None:
        await self.notebooks.UpdateCell(
            notebook_pb2.UpdateCellRequest(
                notebook_id=notebook_id, cell_id=cell_id, code=code
            ),
            metadata=self.metadata(),
        )

    async def run(
        self, notebook_id: str, *cell_ids: str, user: str = "alice"
    ) -> list[execution_pb2.ExecutionEvent]:
        """Run cells and return every event of the run."""
        stream = self.execution.RunCells(
            execution_pb2.RunCellsRequest(notebook_id=notebook_id, cell_ids=cell_ids),
            metadata=self.metadata(user),
            timeout=60,
        )
        return await collect(stream)


async def collect(
    stream: AsyncIterable[execution_pb2.RunCellsResponse],
) -> list[execution_pb2.ExecutionEvent]:
    return [reply.event async for reply in stream]


def finished(
    events: list[execution_pb2.ExecutionEvent],
) -> dict[str, notebook_pb2.CellResult]:
    """Each cell's final result in a run, by cell id."""
    return {
        e.cell_id: e.cell_finished.result for e in events if e.HasField("cell_finished")
    }


def stdout_of(events: list[execution_pb2.ExecutionEvent], cell_id: str) -> str:
    return stream_of(events, cell_id, execution_pb2.STREAM_STDOUT)


def stderr_of(events: list[execution_pb2.ExecutionEvent], cell_id: str) -> str:
    return stream_of(events, cell_id, execution_pb2.STREAM_STDERR)


def stream_of(
    events: list[execution_pb2.ExecutionEvent],
    cell_id: str,
    stream: execution_pb2.Stream.ValueType,
) -> str:
    """What the cell printed on one stream during the run."""
    return "".join(
        e.stream_chunk.text
        for e in events
        if e.cell_id == cell_id
        and e.HasField("stream_chunk")
        and e.stream_chunk.stream == stream
    )


def outputs_of(
    events: list[execution_pb2.ExecutionEvent], cell_id: str
) -> list[notebook_pb2.Output]:
    return [e.output for e in events if e.cell_id == cell_id and e.HasField("output")]


def text_outputs(events: list[execution_pb2.ExecutionEvent], cell_id: str) -> list[str]:
    return [o.text for o in outputs_of(events, cell_id) if o.mime_type == "text/plain"]


@pytest.fixture
def kernel_settings(request: pytest.FixtureRequest) -> KernelSettings:
    """TEST_KERNELS, or what a test passes with parametrize(indirect=True)."""
    settings: KernelSettings = getattr(request, "param", TEST_KERNELS)
    return settings


@pytest.fixture
async def stack(
    kernel_settings: KernelSettings, launcher: KernelLauncher
) -> AsyncIterator[Stack]:
    tokens = InternalTokens(SECRET)
    notebook_server, notebook_port = build_notebook(
        NotebookManager(MemoryStore()), "127.0.0.1:0", tokens
    )
    await notebook_server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{notebook_port}")
    recorder = ResultRecorder(NotebookClient(channel), tokens)
    follower = ChangeFollower(NotebookClient(channel), tokens)
    workdirs = WorkdirSync(
        NotebookClient(channel), tokens, confined=kernel_settings.sandbox is not None
    )
    sessions = SessionManager(launcher, kernel_settings, recorder, follower, workdirs)
    execution_server, execution_port = build_execution(
        sessions, NotebookClient(channel), "127.0.0.1:0", tokens, REPLICA_ID
    )
    await execution_server.start()
    execution_channel = grpc.aio.insecure_channel(f"127.0.0.1:{execution_port}")
    try:
        yield Stack(
            notebooks=notebook_pb2_grpc.NotebookServiceStub(channel),
            execution=execution_pb2_grpc.ExecutionServiceStub(execution_channel),
            tokens=tokens,
            sessions=sessions,
            recorder=recorder,
            notebook_channel=channel,
            execution_channel=execution_channel,
        )
    finally:
        await execution_server.stop(None)
        await sessions.close()
        await recorder.close()
        await execution_channel.close()
        await channel.close()
        await notebook_server.stop(None)


def with_kernels(**changes: object) -> KernelSettings:
    """The test kernel settings with some changed."""
    return dataclasses.replace(TEST_KERNELS, **changes)  # type: ignore[arg-type]
