"""LocalFileStore: one JSON document per notebook under a data directory.

Layout::

    <data_dir>/notebooks/<notebook id>.json   the notebook (documents.py)
    <data_dir>/owners/<sha256 of owner>.json  the owner index: id -> create_time

Every file is replaced atomically (temp file in the same directory, fsync,
os.replace, fsync of the directory), so a crash leaves either the old or the
new document, never a torn one. A create writes the owner index entry before
the notebook, and a delete removes the notebook before the entry: a crash in
between leaves at worst an entry without a file, which listing skips and
removes. Nothing is read until it is asked for; what has been read is cached
and the cache is updated by every write, so a notebook is read from disk at
most once per process.

One process owns a data directory: the per-notebook locks that make put
conditional live in this process, so two processes sharing a directory could
lose each other's edits (run replicas on DynamoDB instead).

File I/O runs in worker threads (asyncio.to_thread) so the event loop keeps
serving other requests while a large notebook is fsynced.

A recorded run result (``put(..., durable=False)``) is in the cache, and so
seen by every reader, when put returns; one background task writes such
notebooks right after, coalescing results that arrive while it writes. That
takes the file write and its two fsyncs off every run's path (they were most
of a one-line cell's round trip) at the price of the results of the last
moments before a crash: a result can be recreated by running the cell again,
an edit cannot, and edits are written before put returns, with every result
recorded before them. `close` writes what is pending.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import weakref
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from services.notebook.errors import (
    NotebookAlreadyExists,
    NotebookCorrupt,
    NotebookNotFound,
    RevisionConflict,
)
from services.notebook.models import NotebookId
from services.notebook.store import check_identity_unchanged, check_page_size
from services.notebook.store.documents import (
    FORMAT,
    DocumentError,
    ListingKey,
    decode_page_token,
    encode_page_token,
    notebook_from_document,
    notebook_to_document,
    time_from_text,
    time_to_text,
)
from services.shared.files import fsync_directory, remove_durably, write_atomically
from services.shared.patterns import ID

if TYPE_CHECKING:
    import builtins
    from collections.abc import Coroutine
    from datetime import datetime
    from pathlib import Path

    from services.notebook.models import Notebook, NotebookSummary

    OwnerIndex: TypeAlias = dict[NotebookId, datetime]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class LocalFileStore:
    """Notebooks as JSON files under data_dir, loaded lazily and cached."""

    def __init__(self, data_dir: Path) -> None:
        # No I/O here: the directories are created by the first write.
        self._notebooks_dir = data_dir / "notebooks"
        self._owners_dir = data_dir / "owners"
        self._data_dir = data_dir
        self._directories_made = False
        self._cache: dict[NotebookId, Notebook] = {}
        self._indexes: dict[str, OwnerIndex] = {}
        # Weak values: a lock lives only while someone holds or awaits it, so
        # the table does not grow with every id ever seen.
        self._notebook_locks: weakref.WeakValueDictionary[NotebookId, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._owner_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._in_flight: set[asyncio.Task[Any]] = set()
        # Notebooks whose cached version is newer than their file.
        self._unwritten: set[NotebookId] = set()
        self._write_soon = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    async def close(self) -> None:
        """Write what is pending; wait for writes that outlived their callers."""
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        await self._write_unwritten()
        await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def create(self, notebook: Notebook) -> None:
        """Store a new notebook; raise NotebookAlreadyExists if the id is taken."""
        # Ids become file names; the service validates them first, this is
        # the store's own guard against "..", "/" and NUL.
        if not ID.fullmatch(notebook.id):
            raise ValueError(f"notebook id {notebook.id!r} cannot name a file")
        await self._complete(self._create(notebook))

    async def get(self, notebook_id: NotebookId) -> Notebook:
        """Return the notebook; raise NotebookNotFound or NotebookCorrupt."""
        cached = self._cache.get(notebook_id)
        if cached is not None:
            return cached
        async with self._notebook_lock(notebook_id):
            return await self._load(notebook_id)

    async def put(
        self, notebook: Notebook, expected_revision: int, *, durable: bool = True
    ) -> None:
        """Replace the notebook if it is still at expected_revision (on disk
        now, or with ``durable=False`` in the cache now and on disk soon)."""
        if durable:
            await self._complete(self._put(notebook, expected_revision))
        else:
            await self._put_soon(notebook, expected_revision)

    async def delete(self, notebook_id: NotebookId) -> None:
        """Remove the notebook; raise NotebookNotFound if there is none."""
        await self._complete(self._delete(notebook_id))

    async def list(
        self, owner: str, page_size: int, page_token: str
    ) -> tuple[builtins.list[NotebookSummary], str]:
        """Return one page of the owner's notebooks, newest first, and the
        next page's token ("" on the last page).

        Only the page's notebooks are read. Entries whose file is missing or
        unreadable are skipped rather than failing the whole listing.
        """
        check_page_size(page_size)
        after = decode_page_token(owner, page_token) if page_token else None
        async with self._owner_lock(owner):
            index = await self._index(owner)
        keys: builtins.list[ListingKey] = sorted(
            ((create_time, notebook_id) for notebook_id, create_time in index.items()),
            reverse=True,
        )
        if after is not None:
            keys = [key for key in keys if key < after]
        page: builtins.list[NotebookSummary] = []
        for position, (_, notebook_id) in enumerate(keys):
            if len(page) == page_size:
                return page, encode_page_token(owner, keys[position - 1])
            summary = await self._summary_for_listing(owner, notebook_id)
            if summary is not None:
                page.append(summary)
        return page, ""

    # --- the operations, run to completion even if the caller is cancelled

    async def _complete(self, operation: Coroutine[Any, Any, _T]) -> _T:
        """Run a write so that cancelling the caller does not cut it short.

        A worker thread cannot be stopped: cancelled half-way, the file could
        be replaced while the cache (and the lock) said otherwise, and the
        next put would be checked against a stale revision. gRPC cancels a
        handler whenever its client goes away, so this is not hypothetical.
        """
        task = asyncio.create_task(operation)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(_log_orphaned_failure)
            raise

    async def _create(self, notebook: Notebook) -> None:
        async with self._notebook_lock(notebook.id):
            path = self._notebook_path(notebook.id)
            if notebook.id in self._cache or await asyncio.to_thread(path.exists):
                raise NotebookAlreadyExists(notebook.id)
            # Encoded first: a notebook that cannot be encoded leaves no trace.
            data = await asyncio.to_thread(_encode_notebook, notebook)
            await self._make_directories()
            # Index entry first (see the module docstring).
            await self._change_index(
                notebook.owner, add=(notebook.id, notebook.create_time)
            )
            await asyncio.to_thread(write_atomically, path, data)
            self._cache[notebook.id] = notebook

    async def _put(self, notebook: Notebook, expected_revision: int) -> None:
        async with self._notebook_lock(notebook.id):
            current = await self._load(notebook.id)
            if current.revision != expected_revision:
                raise RevisionConflict(notebook.id, expected_revision, current.revision)
            check_identity_unchanged(current, notebook)
            data = await asyncio.to_thread(_encode_notebook, notebook)
            await asyncio.to_thread(
                write_atomically, self._notebook_path(notebook.id), data
            )
            self._cache[notebook.id] = notebook
            # Built on the cached version: it holds every pending result.
            self._unwritten.discard(notebook.id)

    async def _put_soon(self, notebook: Notebook, expected_revision: int) -> None:
        async with self._notebook_lock(notebook.id):
            current = await self._load(notebook.id)
            if current.revision != expected_revision:
                raise RevisionConflict(notebook.id, expected_revision, current.revision)
            check_identity_unchanged(current, notebook)
            self._cache[notebook.id] = notebook
            self._unwritten.add(notebook.id)
        self._write_soon.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_forever())

    async def _write_forever(self) -> None:
        while True:
            await self._write_soon.wait()
            self._write_soon.clear()
            await self._write_unwritten()

    async def _write_unwritten(self) -> None:
        """Write every notebook whose cache is ahead of its file."""
        for notebook_id in list(self._unwritten):
            async with self._notebook_lock(notebook_id):
                notebook = self._cache.get(notebook_id)
                if notebook_id not in self._unwritten or notebook is None:
                    continue
                try:
                    data = await asyncio.to_thread(_encode_notebook, notebook)
                    await asyncio.to_thread(
                        write_atomically, self._notebook_path(notebook_id), data
                    )
                except OSError as error:
                    # Left pending: the next result or edit writes it again.
                    logger.error("could not write notebook %s: %s", notebook_id, error)
                    continue
                self._unwritten.discard(notebook_id)

    async def _delete(self, notebook_id: NotebookId) -> None:
        async with self._notebook_lock(notebook_id):
            owner: str | None
            try:
                owner = (await self._load(notebook_id)).owner
            except NotebookCorrupt:
                # Deleting is how a corrupt notebook gets cleaned up. Its owner
                # is unknown, so its index entry stays until listing finds the
                # file gone and removes it.
                owner = None
            await asyncio.to_thread(remove_durably, self._notebook_path(notebook_id))
            self._cache.pop(notebook_id, None)
            self._unwritten.discard(notebook_id)
            # File first, then the index entry (see the module docstring).
            if owner is not None:
                await self._change_index(owner, remove=notebook_id)

    # --- reading

    async def _load(self, notebook_id: NotebookId) -> Notebook:
        """Return the notebook from the cache or disk. Hold its lock: a load
        racing a put could otherwise cache the older document."""
        cached = self._cache.get(notebook_id)
        if cached is not None:
            return cached
        path = self._notebook_path(notebook_id)
        notebook = await asyncio.to_thread(_read_notebook, path, notebook_id)
        self._cache[notebook_id] = notebook
        return notebook

    async def _summary_for_listing(
        self, owner: str, notebook_id: NotebookId
    ) -> NotebookSummary | None:
        try:
            notebook = await self.get(notebook_id)
        except NotebookCorrupt as error:
            logger.warning("listing notebooks of %r skips one: %s", owner, error)
            return None
        except NotebookNotFound:
            notebook = None
        if notebook is not None and notebook.owner == owner:
            return notebook.summary()
        await self._complete(self._drop_stale_entry(owner, notebook_id))
        return None

    async def _drop_stale_entry(self, owner: str, notebook_id: NotebookId) -> None:
        """Remove an index entry whose notebook is gone or now someone else's
        (a crash between writing the entry and the file, or between removing
        the file and the entry)."""
        async with self._notebook_lock(notebook_id):
            # Checked again under the lock: a create may have been between
            # its index entry and its file when listing looked.
            try:
                notebook = await self._load(notebook_id)
            except NotebookNotFound:
                notebook = None
            except NotebookCorrupt:
                # It may well be this owner's: keep the entry, so the
                # notebook reappears once the file is repaired.
                return
            if notebook is not None and notebook.owner == owner:
                return
            logger.warning(
                "removing index entry of %r for notebook %r: gone or not theirs",
                owner,
                notebook_id,
            )
            await self._change_index(owner, remove=notebook_id)

    # --- the owner index

    async def _index(self, owner: str) -> OwnerIndex:
        """Return the owner's index (hold the owner's lock)."""
        index = self._indexes.get(owner)
        if index is None:
            path = self._index_path(owner)
            try:
                index = await asyncio.to_thread(_read_index, path, owner)
            except DocumentError as error:
                # Every notebook file names its owner, so the index can be
                # rebuilt; failing every listing of this owner would be worse.
                logger.warning(
                    "owner index %s is unreadable (%s); rebuilding it", path, error
                )
                index = await asyncio.to_thread(
                    _scan_for_owner, self._notebooks_dir, owner
                )
                await self._make_directories()
                await asyncio.to_thread(_write_index, path, owner, index)
            self._indexes[owner] = index
        return index

    async def _change_index(
        self,
        owner: str,
        *,
        add: tuple[NotebookId, datetime] | None = None,
        remove: NotebookId | None = None,
    ) -> None:
        async with self._owner_lock(owner):
            # Changed on a copy: if the write fails, the cache still matches
            # the file.
            index = dict(await self._index(owner))
            if add is not None:
                index[add[0]] = add[1]
            if remove is not None:
                index.pop(remove, None)
            await asyncio.to_thread(_write_index, self._index_path(owner), owner, index)
            self._indexes[owner] = index

    # --- paths, locks, directories

    def _notebook_path(self, notebook_id: NotebookId) -> Path:
        if not ID.fullmatch(notebook_id):
            raise NotebookNotFound(notebook_id)
        return self._notebooks_dir / f"{notebook_id}.json"

    def _index_path(self, owner: str) -> Path:
        # Hashed: an owner is any string (a user id from a token), not a file
        # name.
        digest = hashlib.sha256(owner.encode("utf-8", "surrogatepass")).hexdigest()
        return self._owners_dir / f"{digest}.json"

    def _notebook_lock(self, notebook_id: NotebookId) -> asyncio.Lock:
        lock = self._notebook_locks.get(notebook_id)
        if lock is None:
            lock = self._notebook_locks[notebook_id] = asyncio.Lock()
        return lock

    def _owner_lock(self, owner: str) -> asyncio.Lock:
        lock = self._owner_locks.get(owner)
        if lock is None:
            lock = self._owner_locks[owner] = asyncio.Lock()
        return lock

    async def _make_directories(self) -> None:
        if not self._directories_made:
            await asyncio.to_thread(_make_directories, self._data_dir)
            self._directories_made = True


def _log_orphaned_failure(task: asyncio.Task[Any]) -> None:
    # The caller was cancelled, so nobody else will see how the write ended.
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.warning(
            "store operation failed after its caller was cancelled: %r", error
        )


# --- blocking helpers, run in worker threads


def _encode_notebook(notebook: Notebook) -> bytes:
    # UTF-8 rather than \u escapes: half the size for non-Latin text, and the
    # files stay readable.
    document = notebook_to_document(notebook)
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def _read_notebook(path: Path, notebook_id: NotebookId) -> Notebook:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotebookNotFound(notebook_id) from None
    try:
        notebook = notebook_from_document(json.loads(data))
    except (UnicodeDecodeError, json.JSONDecodeError, DocumentError) as error:
        raise NotebookCorrupt(notebook_id, str(error)) from None
    if notebook.id != notebook_id:
        raise NotebookCorrupt(notebook_id, f"the file holds notebook {notebook.id!r}")
    return notebook


def _read_index(path: Path, owner: str) -> OwnerIndex:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DocumentError(str(error)) from None
    if (
        not isinstance(document, dict)
        or document.get("format") != FORMAT
        or document.get("owner") != owner
        or not isinstance(entries := document.get("notebooks"), dict)
    ):
        raise DocumentError("not an owner index of this owner")
    index: OwnerIndex = {}
    for notebook_id, create_time in entries.items():
        if not isinstance(create_time, str):
            raise DocumentError(f"entry {notebook_id!r} is not a datetime")
        index[NotebookId(notebook_id)] = time_from_text(create_time)
    return index


def _write_index(path: Path, owner: str, index: OwnerIndex) -> None:
    document = {
        "format": FORMAT,
        "owner": owner,
        "notebooks": {
            notebook_id: time_to_text(create_time)
            for notebook_id, create_time in index.items()
        },
    }
    write_atomically(path, json.dumps(document, ensure_ascii=False).encode("utf-8"))


def _scan_for_owner(notebooks_dir: Path, owner: str) -> OwnerIndex:
    index: OwnerIndex = {}
    if not notebooks_dir.is_dir():
        return index
    # Temp files end in ".tmp", so the glob skips writes cut short by a crash.
    for path in notebooks_dir.glob("*.json"):
        notebook_id = NotebookId(path.stem)
        try:
            notebook = _read_notebook(path, notebook_id)
        except (NotebookNotFound, NotebookCorrupt) as error:
            logger.warning(
                "rebuilding the index of %r skips %s: %s", owner, path, error
            )
            continue
        if notebook.owner == owner:
            index[notebook_id] = notebook.create_time
    return index


def _make_directories(data_dir: Path) -> None:
    for directory in (data_dir / "notebooks", data_dir / "owners"):
        directory.mkdir(parents=True, exist_ok=True)
    fsync_directory(data_dir)
