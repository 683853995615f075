"""The notebook service's application layer: load, check, edit, store, publish.

Edits to one notebook are serialised by a per-notebook lock held from load
to store, and every store write is conditional on the revision that was
loaded, so a write from another replica in between is refused
(RevisionConflict) instead of overwritten. A caller that passes an expected
revision gets RevisionConflict when the notebook has moved on.

Ownership is checked on every load: a notebook of another user raises the
same NotebookNotFound as a missing one.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from services.notebook import edits, metrics, templates
from services.notebook.changes import Change, ChangeKind, ChangeSink, Snapshot
from services.notebook.errors import NotebookNotFound, RevisionConflict
from services.notebook.graphs import (
    CellView,
    NotebookGraphs,
    ShownErrors,
    cell_view,
    cell_views,
    shown_errors,
)
from services.notebook.models import (
    Cell,
    CellId,
    CellStatus,
    CellType,
    Notebook,
    NotebookId,
    NotebookSummary,
    RunMode,
)
from services.shared.fanout import EventHub, Lagged

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable, Mapping, Sequence

    from services.notebook.importing import ImportedCell
    from services.notebook.store import NotebookStore
    from services.shared.dataflow import DependencyGraph


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class CellChange:
    """The outcome of a cell edit."""

    revision: int
    cell: CellView | None
    affected: tuple[CellView, ...]


@dataclass(frozen=True)
class _Edited:
    before: Notebook
    after: Notebook
    graph: DependencyGraph
    shown: ShownErrors
    affected: tuple[CellView, ...]


class NotebookManager:
    """Notebooks as their owners see them."""

    def __init__(
        self,
        store: NotebookStore,
        hub: EventHub[Change] | None = None,
        clock: Callable[[], datetime] = _now,
        new_id: Callable[[], str] = _new_id,
        sink: ChangeSink | None = None,
    ) -> None:
        self._store = store
        self._hub: EventHub[Change] = hub or EventHub()
        self._sink = sink
        self._graphs = NotebookGraphs()
        self._clock = clock
        self._new_id = new_id
        self._locks: weakref.WeakValueDictionary[NotebookId, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    # -- notebooks ---------------------------------------------------------

    async def create_notebook(self, owner: str, name: str, demo: bool) -> Snapshot:
        """Create a notebook, empty or from the demo template."""
        cells: tuple[Cell, ...] = ()
        if demo:
            cells = tuple(
                Cell(CellId(self._cell_id()), t.type, t.code, t.result_name)
                for t in templates.DEMO
            )
        return await self._create(owner, name, cells)

    async def import_notebook(
        self, owner: str, name: str, imported: Sequence[ImportedCell]
    ) -> tuple[Snapshot, list[tuple[CellId, str]]]:
        """Create a notebook from imported cells; return it with the notes,
        each naming the cell it is about."""
        cells = tuple(
            Cell(
                CellId(self._cell_id()),
                cell.type,
                cell.code,
                cell.result_name,
                # Outputs from another tool are out of date until run here.
                status=CellStatus.STALE,
                result=cell.result,
            )
            for cell in imported
        )
        notes = [
            (cell.id, note)
            for cell, source in zip(cells, imported, strict=True)
            for note in source.notes
        ]
        return await self._create(owner, name, cells), notes

    async def _create(self, owner: str, name: str, cells: tuple[Cell, ...]) -> Snapshot:
        now = self._clock()
        notebook = Notebook(
            id=NotebookId(self._new_id()),
            owner=owner,
            name=name or "Untitled",
            revision=1,
            create_time=now,
            update_time=now,
            cells=cells,
        )
        await self._store.create(notebook)
        return self._snapshot(notebook)

    async def list_notebooks(
        self, owner: str, page_size: int, page_token: str
    ) -> tuple[list[NotebookSummary], str]:
        """One page of the owner's notebooks, newest first."""
        return await self._store.list(owner, page_size, page_token)

    async def get_notebook(self, owner: str, notebook_id: NotebookId) -> Snapshot:
        """The notebook with its cells' analysis."""
        return self._snapshot(await self._load(owner, notebook_id))

    async def dependency_order(
        self, owner: str, notebook_id: NotebookId
    ) -> tuple[Snapshot, list[CellId]]:
        """The notebook and its cells in the order they run: parents first,
        ties in notebook order (what a script export needs)."""
        notebook = await self._load(owner, notebook_id)
        graph = self._graphs.graph(notebook)
        order = graph.topological_order({cell.id for cell in notebook.cells})
        return self._snapshot(notebook), order

    async def rename(
        self, owner: str, notebook_id: NotebookId, name: str, expected: int
    ) -> Notebook:
        """Rename the notebook."""
        return await self._edit_settings(
            owner, notebook_id, expected, lambda nb, now: edits.rename(nb, name, now)
        )

    async def set_database_url(
        self, owner: str, notebook_id: NotebookId, url: str, expected: int
    ) -> Notebook:
        """Set ("" clears) the notebook's database connection."""
        return await self._edit_settings(
            owner,
            notebook_id,
            expected,
            lambda nb, now: edits.set_database_url(nb, url, now),
        )

    async def set_run_mode(
        self, owner: str, notebook_id: NotebookId, run_mode: RunMode, expected: int
    ) -> Notebook:
        """Switch the notebook between automatic and lazy runs."""
        return await self._edit_settings(
            owner,
            notebook_id,
            expected,
            lambda nb, now: edits.set_run_mode(nb, run_mode, now),
        )

    async def _edit_settings(
        self,
        owner: str,
        notebook_id: NotebookId,
        expected: int,
        edit: Callable[[Notebook, datetime], Notebook],
    ) -> Notebook:
        """Apply an edit of the notebook's own settings; tell the watchers."""
        done = await self._edit(owner, notebook_id, expected, edit)
        await self._publish(
            Change(
                ChangeKind.NOTEBOOK_CHANGED, done.after.revision, done.after.summary()
            )
        )
        return done.after

    async def delete_notebook(
        self, owner: str, notebook_id: NotebookId, expected: int
    ) -> None:
        """Delete the notebook; its watchers are told and their streams end."""
        async with self._lock(notebook_id):
            notebook = await self._load(owner, notebook_id)
            _check_revision(notebook, expected)
            await self._store.delete(notebook_id)
        self._graphs.forget(notebook_id)
        await self._publish(
            Change(
                ChangeKind.NOTEBOOK_DELETED, notebook.revision + 1, notebook.summary()
            )
        )

    # -- cells -------------------------------------------------------------

    async def create_cell(
        self,
        owner: str,
        notebook_id: NotebookId,
        cell_type: CellType,
        code: str,
        result_name: str,
        index: int | None,
        expected: int,
    ) -> CellChange:
        """Insert a new (STALE) cell."""
        cell_id = CellId(self._cell_id())

        def add(notebook: Notebook, now: datetime) -> Notebook:
            name = result_name
            if cell_type is CellType.SQL and not name:
                name = f"df_{len(notebook.cells) + 1}"
            cell = Cell(
                cell_id, cell_type, code, name if cell_type is CellType.SQL else ""
            )
            return edits.add_cell(notebook, cell, index, now)

        done = await self._edit(owner, notebook_id, expected, add)
        position = done.graph.order.index(cell_id)
        return await self._cell_changed(
            done, ChangeKind.CELL_CREATED, cell_id, position
        )

    async def update_cell(
        self,
        owner: str,
        notebook_id: NotebookId,
        cell_id: CellId,
        code: str,
        result_name: str | None,
        expected: int,
        expected_code: str | None = None,
    ) -> CellChange:
        """Replace a cell's code; it becomes STALE.

        With ``expected_code``, refused if the cell's code is no longer that.
        """
        done = await self._edit(
            owner,
            notebook_id,
            expected,
            lambda nb, now: edits.update_cell(
                nb, cell_id, code, result_name, now, expected_code
            ),
        )
        return await self._cell_changed(done, ChangeKind.CELL_UPDATED, cell_id)

    async def set_cell_disabled(
        self,
        owner: str,
        notebook_id: NotebookId,
        cell_id: CellId,
        disabled: bool,
        expected: int,
    ) -> CellChange:
        """Disable or enable a cell (watchers see it as a cell update)."""
        done = await self._edit(
            owner,
            notebook_id,
            expected,
            lambda nb, now: edits.set_cell_disabled(nb, cell_id, disabled, now),
        )
        return await self._cell_changed(done, ChangeKind.CELL_UPDATED, cell_id)

    async def move_cell(
        self,
        owner: str,
        notebook_id: NotebookId,
        cell_id: CellId,
        index: int,
        expected: int,
    ) -> Notebook:
        """Move a cell to index."""
        done = await self._edit(
            owner,
            notebook_id,
            expected,
            lambda nb, now: edits.move_cell(nb, cell_id, index, now),
        )
        await self._publish(
            Change(
                ChangeKind.CELL_MOVED,
                done.after.revision,
                done.after.summary(),
                cell_id=cell_id,
                index=index,
            )
        )
        return done.after

    async def delete_cell(
        self,
        owner: str,
        notebook_id: NotebookId,
        cell_id: CellId,
        expected: int,
    ) -> CellChange:
        """Delete a cell."""
        done = await self._edit(
            owner,
            notebook_id,
            expected,
            lambda nb, now: edits.delete_cell(nb, cell_id, now),
        )
        await self._publish(
            Change(
                ChangeKind.CELL_DELETED,
                done.after.revision,
                done.after.summary(),
                cell_id=cell_id,
            ),
            *self._affected_changes(done),
        )
        return CellChange(done.after.revision, None, done.affected)

    async def record_result(
        self,
        owner: str,
        notebook_id: NotebookId,
        cell_id: CellId,
        status: CellStatus,
        result: Mapping[str, Any],
    ) -> int:
        """Store a cell's run result; return the new revision."""
        done = await self._edit(
            owner,
            notebook_id,
            0,
            lambda nb, now: edits.record_result(nb, cell_id, status, result, now),
            durable=False,
        )
        await self._publish_results(done, [cell_id])
        return done.after.revision

    async def record_results(
        self,
        owner: str,
        notebook_id: NotebookId,
        results: Sequence[tuple[CellId, CellStatus, Mapping[str, Any]]],
    ) -> tuple[int, list[CellId]]:
        """Store several cells' results in one revision; return it and the
        cells recorded (results of cells that are gone are skipped)."""
        done = await self._edit(
            owner,
            notebook_id,
            0,
            lambda nb, now: edits.record_results(nb, results, now),
            durable=False,
        )
        recorded = [c for c, _, _ in results if done.after.cell(c) is not None]
        await self._publish_results(done, recorded)
        return done.after.revision, recorded

    async def _publish_results(self, done: _Edited, cell_ids: Sequence[CellId]) -> None:
        summary = done.after.summary()
        await self._publish(
            *(
                Change(
                    ChangeKind.RESULT_RECORDED,
                    done.after.revision,
                    summary,
                    cell=self._view(done, cell_id),
                )
                for cell_id in cell_ids
            )
        )

    # -- watching ----------------------------------------------------------

    async def watch(
        self, owner: str, notebook_id: NotebookId, since_revision: int
    ) -> AsyncGenerator[Snapshot | Change]:
        """A snapshot (or the changes missed since since_revision), then
        every change as it happens, until the notebook is deleted."""
        await self._load(owner, notebook_id)
        async with self._hub.subscribe(notebook_id) as subscription:
            # Loaded again after subscribing, so no change falls in between.
            notebook = await self._load(owner, notebook_id)
            last = notebook.revision
            missed = self._missed(notebook, since_revision)
            if missed is None:
                yield self._snapshot(notebook)
            else:
                for change in missed:
                    yield change
                    last = change.revision
            while True:
                item = await subscription.next()
                if isinstance(item, Lagged):
                    notebook = await self._load(owner, notebook_id)
                    last = notebook.revision
                    yield self._snapshot(notebook)
                    continue
                if item.revision <= last:
                    continue
                yield item.event
                if item.event.kind is ChangeKind.NOTEBOOK_DELETED:
                    return

    def watcher_count(self, notebook_id: NotebookId) -> int:
        """How many streams watch the notebook (for tests and metrics)."""
        return self._hub.watcher_count(notebook_id)

    # -- internals ---------------------------------------------------------

    def _missed(self, notebook: Notebook, since: int) -> list[Change] | None:
        if since <= 0 or since > notebook.revision:
            return None
        if since == notebook.revision:
            return []
        published = self._hub.since(notebook.id, since)
        if published is None or any(p.revision > notebook.revision for p in published):
            return None
        return [p.event for p in published]

    def _cell_id(self) -> str:
        return self._new_id()[:12]

    def _lock(self, notebook_id: NotebookId) -> asyncio.Lock:
        lock = self._locks.get(notebook_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[notebook_id] = lock
        return lock

    async def _load(self, owner: str, notebook_id: NotebookId) -> Notebook:
        notebook = await self._store.get(notebook_id)
        if notebook.owner != owner:
            raise NotebookNotFound(notebook_id)
        return notebook

    async def _edit(
        self,
        owner: str,
        notebook_id: NotebookId,
        expected: int,
        edit: Callable[[Notebook, datetime], Notebook],
        *,
        durable: bool = True,
    ) -> _Edited:
        async with self._lock(notebook_id):
            before = await self._load(owner, notebook_id)
            _check_revision(before, expected)
            errors_before = self._graphs.graph(before).errors()
            after = edit(before, self._clock())
            await self._store.put(after, before.revision, durable=durable)
            graph = self._graphs.advance(before, after)
        errors = graph.errors()
        shown = shown_errors(after, graph, errors)
        changed = {
            cell_id
            for cell_id in errors.keys() | errors_before.keys()
            if errors.get(cell_id) != errors_before.get(cell_id)
        }
        affected = tuple(
            cell_view(cell, graph, shown)
            for cell in after.cells
            if cell.id in changed and before.cell(cell.id) is cell
        )
        return _Edited(before, after, graph, shown, affected)

    def _view(self, done: _Edited, cell_id: CellId) -> CellView:
        cell = done.after.cell(cell_id)
        assert cell is not None
        return cell_view(cell, done.graph, done.shown)

    async def _cell_changed(
        self,
        done: _Edited,
        kind: ChangeKind,
        cell_id: CellId,
        index: int | None = None,
    ) -> CellChange:
        """Publish a cell's change and the cells it affected; return it."""
        view = self._view(done, cell_id)
        summary = done.after.summary()
        change = Change(kind, done.after.revision, summary, cell=view, index=index)
        await self._publish(change, *self._affected_changes(done))
        return CellChange(done.after.revision, view, done.affected)

    def _affected_changes(self, done: _Edited) -> list[Change]:
        summary = done.after.summary()
        return [
            Change(ChangeKind.CELL_UPDATED, done.after.revision, summary, cell=view)
            for view in done.affected
        ]

    def _snapshot(self, notebook: Notebook) -> Snapshot:
        return Snapshot(notebook, cell_views(notebook, self._graphs.graph(notebook)))

    async def _publish(self, *changes: Change) -> None:
        for change in changes:
            self._hub.publish(change.notebook.id, change.revision, change)
        if self._sink is not None:
            await self._sink.publish(changes)


def _check_revision(notebook: Notebook, expected: int) -> None:
    if expected and expected != notebook.revision:
        metrics.REVISION_CONFLICTS.labels("expected_revision").inc()
        raise RevisionConflict(notebook.id, expected, notebook.revision)
