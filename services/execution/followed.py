"""The execution service's own copy of a notebook, kept current by its change stream.

Reading the notebook from the notebook service is the dearest step of a
small run (a gRPC round trip and a whole notebook's conversion, for
`x = 1` more than the kernel takes). A notebook with a live kernel is
followed anyway (`follow.py`), and the stream says everything a run needs:
a snapshot, then each cell created, updated, moved or deleted and each
change of the notebook's own fields. So the follower keeps the notebook
here, and a RunCells that names the revision its caller has seen
(`min_revision`) runs from this copy when the copy is at least that new,
instead of asking the notebook service again.

What the copy keeps is what a run reads: the cells' definitions, their
order, the run mode and the database connection. Recorded results are
counted (they move the revision on) but not applied: a run never reads
them. Whenever the stream breaks, the copy is dropped until the next
snapshot, so a change missed in between can never be run from here.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reflow.notebook.v1 import notebook_pb2

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable


@dataclass(frozen=True)
class Copy:
    """The notebook as of a revision, with its unmasked database URL."""

    notebook: notebook_pb2.Notebook
    database_url: str


class FollowedNotebook:
    """One notebook as its change stream has shown it so far."""

    def __init__(self) -> None:
        self._notebook: notebook_pb2.Notebook | None = None
        # The unmasked URL for the copy's connection; None until asked for.
        self._database_url: str | None = None
        # Set (and replaced) at every change, for `at_least` to wait on.
        self._changed = asyncio.Event()

    @property
    def revision(self) -> int:
        """The revision the copy is at; 0 while there is none."""
        return 0 if self._notebook is None else self._notebook.revision

    def apply(self, change: notebook_pb2.WatchNotebookResponse) -> None:
        """Take one event of the stream, in stream order."""
        self._apply(change)
        self._changed.set()
        self._changed = asyncio.Event()

    def drop(self) -> None:
        """Forget the copy: the stream ended, or the notebook is gone."""
        self._notebook = None
        self._database_url = None

    async def at_least(
        self,
        revision: int,
        timeout_s: float,
        database_url: Callable[[], Awaitable[str]],
    ) -> Copy | None:
        """The copy once it is at ``revision`` or newer; None if it is not
        within ``timeout_s`` (the caller reads the notebook itself then).

        ``database_url`` fetches the unmasked URL when the copy has a
        connection whose URL has not been fetched since it last changed.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while 0 < self.revision < revision:
                    await self._changed.wait()
        notebook = self._notebook
        if notebook is None or notebook.revision < revision:
            return None
        url = self._database_url
        if notebook.database_url and url is None:
            url = await database_url()
            if self._notebook is notebook:
                self._database_url = url
        # Later changes edit the copy in place: the run gets its own.
        snapshot = notebook_pb2.Notebook()
        snapshot.CopyFrom(notebook)
        return Copy(snapshot, url or "")

    def _apply(self, change: notebook_pb2.WatchNotebookResponse) -> None:
        kind = change.WhichOneof("event")
        if kind == "snapshot":
            self._notebook = notebook_pb2.Notebook()
            self._notebook.CopyFrom(change.snapshot)
            self._database_url = None
            return
        notebook = self._notebook
        if notebook is None:
            return
        if kind == "notebook_deleted":
            self._notebook = None
            return
        cells = notebook.cells
        if kind == "cell_created":
            created = change.cell_created
            cells.insert(_clamped(created.index, len(cells)), created.cell)
        elif kind == "cell_updated":
            position = _position(cells, change.cell_updated.cell.id)
            if position is not None:
                cells[position].CopyFrom(change.cell_updated.cell)
        elif kind == "cell_moved":
            moved = change.cell_moved
            position = _position(cells, moved.cell_id)
            if position is not None:
                cell = notebook_pb2.Cell()
                cell.CopyFrom(cells[position])
                del cells[position]
                cells.insert(_clamped(moved.index, len(cells)), cell)
        elif kind == "cell_deleted":
            position = _position(cells, change.cell_deleted.cell_id)
            if position is not None:
                del cells[position]
        elif kind == "notebook_changed":
            changed = change.notebook_changed.notebook
            # The URL shown is masked: a new password looks the same.
            self._database_url = None
            notebook.name = changed.name
            notebook.database_url = changed.database_url
            notebook.run_mode = changed.run_mode
        notebook.cell_count = len(cells)
        notebook.revision = max(notebook.revision, change.revision)


def _position(cells: Iterable[notebook_pb2.Cell], cell_id: str) -> int | None:
    for position, cell in enumerate(cells):
        if cell.id == cell_id:
            return position
    return None


def _clamped(index: int, length: int) -> int:
    return min(max(index, 0), length)
