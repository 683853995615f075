"""What a run is made of: requests, their merging, and the run's state.

A notebook runs one thing at a time. RunCells requests that arrive while a
run is in progress wait in the session's queue; when the run ends, all
waiting requests are merged into one run (the union of their cells, on the
newest copy of the notebook), so a burst of edits-and-runs costs one pass
over the graph instead of one per request. Each request learns the id of the
run that serves it and streams that run's events.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reflow.notebook.v1 import notebook_pb2
    from services.execution.files import FileListing
    from services.shared.dataflow import CellId


@dataclass(eq=False)
class RunRequest:
    """One caller's wish to run cells of a notebook."""

    cells: frozenset[CellId]
    notebook: notebook_pb2.Notebook
    database_url: str
    # Also run every cell whose code changed since it last ran here.
    stale: bool = False
    # The notebook's files, read with the notebook (None: not read).
    files: FileListing | None = None
    # Set by the session when the run serving this request starts.
    run_id: str = ""
    assigned: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class MergedRun:
    """Several requests served by one run."""

    cells: frozenset[CellId]
    notebook: notebook_pb2.Notebook
    database_url: str
    run_all_stale: bool
    files: FileListing | None = None


def merge(requests: list[RunRequest]) -> MergedRun:
    """One run for all waiting requests, on the newest notebook among them."""
    newest = max(requests, key=lambda request: request.notebook.revision)
    cells: frozenset[CellId] = frozenset().union(*(r.cells for r in requests))
    return MergedRun(
        cells=cells,
        notebook=newest.notebook,
        database_url=newest.database_url,
        run_all_stale=any(r.stale for r in requests),
        # The latest request read the files last.
        files=next((r.files for r in reversed(requests) if r.files), None),
    )


@dataclass
class RunState:
    """The run in progress: what is running and whether it was stopped."""

    run_id: str
    running_cell: str = ""
    interrupted: bool = False
    # Set when a kernel ignored the interrupt and was killed for it.
    escalated: bool = False
    # Set when the kernel is being restarted or shut down on purpose.
    stopping_kernel: bool = False
