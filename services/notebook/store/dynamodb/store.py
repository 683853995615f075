"""DynamoDBStore: the NotebookStore on a DynamoDB table (design: package doc)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from services.notebook.errors import (
    NotebookAlreadyExists,
    NotebookCorrupt,
    NotebookNotFound,
    RevisionConflict,
    StoreUnavailable,
)
from services.notebook.store import check_identity_unchanged, check_page_size
from services.notebook.store.documents import (
    DocumentError,
    decode_page_token,
    encode_page_token,
)
from services.notebook.store.dynamodb.calls import (
    ConditionFailed,
    backoff,
    batch_get,
    delete_existing,
    get_item,
    translated_errors,
)
from services.notebook.store.dynamodb.items import (
    LISTING_INDEX,
    CellRef,
    Item,
    Meta,
    body_of,
    decode_cell,
    listing_start_key,
    meta_from_item,
    meta_key,
    part_keys,
    summary_from_item,
)
from services.notebook.store.dynamodb.writes import (
    CREATE_CONDITION,
    Writer,
    plan_write,
    put_condition,
)

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable, Coroutine, Mapping

    from types_aiobotocore_dynamodb.client import DynamoDBClient

    from services.notebook.models import (
        Cell,
        CellId,
        Notebook,
        NotebookId,
        NotebookSummary,
    )
    from services.shared.errors import ServiceError

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_READ_ATTEMPTS: Final = 10
# Decoding (zlib, JSON) of more than this many bytes runs in a worker thread,
# so one large output does not stall every other request on the event loop.
_INLINE_DECODE_BYTES: Final = 64 * 1024


def _new_id() -> str:
    # 64 random bits: write ids only need to be unique within one notebook.
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class _Entry:
    """A notebook as this process last read or wrote it, and where its cells
    live (the cache's unit)."""

    notebook: Notebook
    incarnation: str
    refs: Mapping[CellId, CellRef]

    def cells_by_write(self) -> dict[tuple[CellId, str], Cell]:
        """The cached cells, keyed by (cell id, write id)."""
        return {
            (cell.id, self.refs[cell.id].write_id): cell for cell in self.notebook.cells
        }


class DynamoDBStore:
    """Notebooks in a DynamoDB table, loaded lazily and cached per process."""

    def __init__(
        self,
        client: DynamoDBClient,
        table: str,
        new_id: Callable[[], str] = _new_id,
    ) -> None:
        # No I/O here: the table is first touched by the first request.
        self._client = client
        self._table = table
        self._writer = Writer(client, table)
        self._new_id = new_id
        self._cache: dict[NotebookId, _Entry] = {}
        self._in_flight: set[asyncio.Task[Any]] = set()

    async def close(self) -> None:
        """Wait for writes that outlived their (cancelled) callers."""
        await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def create(self, notebook: Notebook) -> None:
        """Store a new notebook; raise NotebookAlreadyExists if the id is taken."""
        with translated_errors(self._table):
            await self._complete(self._create(notebook))

    async def get(self, notebook_id: NotebookId) -> Notebook:
        """Return the notebook; raise NotebookNotFound or NotebookCorrupt."""
        with translated_errors(self._table):
            return (await self._load(notebook_id)).notebook

    async def put(
        self, notebook: Notebook, expected_revision: int, *, durable: bool = True
    ) -> None:
        """Replace the notebook if it is still at expected_revision.

        Always at once (``durable`` is not used): other replicas read the
        table, not this process.
        """
        with translated_errors(self._table):
            await self._complete(self._put(notebook, expected_revision))

    async def delete(self, notebook_id: NotebookId) -> None:
        """Remove the notebook; raise NotebookNotFound if there is none."""
        with translated_errors(self._table):
            await self._complete(self._delete(notebook_id))

    async def list(
        self, owner: str, page_size: int, page_token: str
    ) -> tuple[builtins.list[NotebookSummary], str]:
        """Return one page of the owner's notebooks, newest first, and the
        next page's token ("" on the last page). Read from the listing GSI, so
        a change shows up there within DynamoDB's index lag (usually well
        under a second); get() is always current."""
        check_page_size(page_size)
        after = decode_page_token(owner, page_token) if page_token else None
        if not owner:
            return [], ""  # an empty string cannot be a key in DynamoDB
        start = listing_start_key(owner, *after) if after is not None else None
        with translated_errors(self._table):
            summaries = await self._query_listing(owner, page_size + 1, start)
        page = summaries[:page_size]
        if len(summaries) <= page_size:
            return page, ""
        return page, encode_page_token(owner, (page[-1].create_time, page[-1].id))

    # --- the operations, run to completion even if the caller is cancelled

    async def _complete(self, operation: Coroutine[Any, Any, _T]) -> _T:
        """Run a write so that cancelling the caller does not cut it short.

        Cut short between staging parts and committing the meta item, a write
        would leave unreferenced items behind; cut short in the middle of a
        request, it would leave the cache unsure of what is stored. gRPC
        cancels a handler whenever its client goes away.
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
        incarnation = commit = self._new_id()
        write = await asyncio.to_thread(
            plan_write, notebook, incarnation, commit, {}, {}
        )
        try:
            await self._writer.commit(write, CREATE_CONDITION)
        except ConditionFailed:
            raise NotebookAlreadyExists(notebook.id) from None
        self._remember(_entry(notebook, incarnation, write.refs))

    async def _put(self, notebook: Notebook, expected_revision: int) -> None:
        entry = self._cache.get(notebook.id)
        if entry is None or entry.notebook.revision != expected_revision:
            entry = await self._load(notebook.id)
        if entry.notebook.revision != expected_revision:
            raise RevisionConflict(
                notebook.id, expected_revision, entry.notebook.revision
            )
        check_identity_unchanged(entry.notebook, notebook)
        stored = {cell.id: cell for cell in entry.notebook.cells}
        write = await asyncio.to_thread(
            plan_write,
            notebook,
            entry.incarnation,
            self._new_id(),
            stored,
            entry.refs,
        )
        try:
            await self._writer.commit(
                write, put_condition(expected_revision, entry.incarnation)
            )
        except ConditionFailed:
            # Another writer (another replica) got there first: what this
            # process has cached is stale.
            self._cache.pop(notebook.id, None)
            raise await self._conflict(notebook.id, expected_revision) from None
        except BaseException:
            # Unknown outcome (no answer, cancelled): trust nothing cached.
            self._cache.pop(notebook.id, None)
            raise
        self._remember(_entry(notebook, entry.incarnation, write.refs))

    async def _delete(self, notebook_id: NotebookId) -> None:
        self._cache.pop(notebook_id, None)
        try:
            old = await delete_existing(
                self._client, self._table, meta_key(notebook_id)
            )
        except ConditionFailed:
            raise NotebookNotFound(notebook_id) from None
        # The notebook is gone once its meta item is; its cell items are
        # unreachable now and removed on a best-effort basis.
        incarnation = old.get("incarnation", {}).get("S")
        if isinstance(incarnation, str):
            await self._writer.sweep(notebook_id, incarnation)

    # --- reading

    async def _load(self, notebook_id: NotebookId) -> _Entry:
        """The notebook as stored now: the meta item is always read, cells
        only when the cache does not already hold that write of them."""
        missing_under: str | None = None
        for attempt in range(_READ_ATTEMPTS):
            item = await get_item(self._client, self._table, meta_key(notebook_id))
            if item is None:
                self._cache.pop(notebook_id, None)
                raise NotebookNotFound(notebook_id)
            meta = _decode_meta(notebook_id, item)
            if missing_under == meta.commit:
                # The same write is current and still lacks parts: they were
                # lost, not replaced by a newer write.
                raise NotebookCorrupt(notebook_id, "some cell items are missing")
            cached = self._cache.get(notebook_id)
            if (
                cached is not None
                and cached.incarnation == meta.incarnation
                and cached.notebook.revision == meta.notebook.revision
            ):
                return cached
            known = (
                cached.cells_by_write()
                if cached is not None and cached.incarnation == meta.incarnation
                else {}
            )
            cells = await self._read_cells(notebook_id, meta, known)
            if cells is not None:
                entry = _Entry(
                    dataclasses.replace(meta.notebook, cells=cells),
                    meta.incarnation,
                    {ref.cell_id: ref for ref in meta.refs},
                )
                self._remember(entry)
                return entry
            # A newer write replaced (and removed) parts of this one while we
            # read: read its meta item again.
            missing_under = meta.commit
            await backoff(attempt)
        raise StoreUnavailable(f"notebook {notebook_id!r} kept changing while read")

    async def _read_cells(
        self,
        notebook_id: NotebookId,
        meta: Meta,
        known: Mapping[tuple[CellId, str], Cell],
    ) -> tuple[Cell, ...] | None:
        """The cells meta names, from known or the table; None if some of
        their parts are no longer there."""
        wanted = [ref for ref in meta.refs if (ref.cell_id, ref.write_id) not in known]
        keys = {ref: part_keys(notebook_id, meta.incarnation, ref) for ref in wanted}
        items = await batch_get(
            self._client, self._table, [key for ks in keys.values() for key in ks]
        )
        if any(key not in items for ks in keys.values() for key in ks):
            return None
        try:
            bodies = {ref: [body_of(items[key]) for key in keys[ref]] for ref in wanted}
            decoded = await _off_loop(
                lambda: {ref: decode_cell(ref.cell_id, bodies[ref]) for ref in wanted},
                sum(len(body) for parts in bodies.values() for body in parts),
            )
        except DocumentError as error:
            raise NotebookCorrupt(notebook_id, str(error)) from None
        return tuple(
            decoded[ref] if ref in decoded else known[(ref.cell_id, ref.write_id)]
            for ref in meta.refs
        )

    async def _query_listing(
        self, owner: str, wanted: int, start: Item | None
    ) -> builtins.list[NotebookSummary]:
        summaries: builtins.list[NotebookSummary] = []
        while len(summaries) < wanted:
            extra: dict[str, Any] = {"ExclusiveStartKey": start} if start else {}
            reply = await self._client.query(
                TableName=self._table,
                IndexName=LISTING_INDEX,
                KeyConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}},
                ScanIndexForward=False,
                Limit=wanted - len(summaries),
                **extra,
            )
            for item in reply.get("Items", []):
                try:
                    summaries.append(summary_from_item(item))
                except DocumentError as error:
                    logger.warning(
                        "listing notebooks of %r skips one: %s", owner, error
                    )
            start = dict(reply.get("LastEvaluatedKey") or {}) or None
            if start is None:
                break
        return summaries

    async def _conflict(self, notebook_id: NotebookId, expected: int) -> ServiceError:
        """The error for a put whose condition failed: not found, or conflict."""
        item = await get_item(self._client, self._table, meta_key(notebook_id))
        if item is None:
            return NotebookNotFound(notebook_id)
        return RevisionConflict(
            notebook_id, expected, _decode_meta(notebook_id, item).notebook.revision
        )

    def _remember(self, entry: _Entry) -> None:
        """Cache entry unless a newer revision of the same notebook is there
        (a read that started before a write may finish after it)."""
        cached = self._cache.get(entry.notebook.id)
        if (
            cached is not None
            and cached.incarnation == entry.incarnation
            and cached.notebook.revision > entry.notebook.revision
        ):
            return
        self._cache[entry.notebook.id] = entry


def _entry(notebook: Notebook, incarnation: str, refs: tuple[CellRef, ...]) -> _Entry:
    return _Entry(notebook, incarnation, {ref.cell_id: ref for ref in refs})


def _decode_meta(notebook_id: NotebookId, item: Item) -> Meta:
    try:
        meta = meta_from_item(item)
    except DocumentError as error:
        raise NotebookCorrupt(notebook_id, str(error)) from None
    if meta.notebook.id != notebook_id:
        raise NotebookCorrupt(
            notebook_id, f"the item holds notebook {meta.notebook.id!r}"
        )
    return meta


async def _off_loop(work: Callable[[], _T], size: int) -> _T:
    if size <= _INLINE_DECODE_BYTES:
        return work()
    return await asyncio.to_thread(work)


def _log_orphaned_failure(task: asyncio.Task[Any]) -> None:
    # The caller was cancelled, so nobody else will see how the write ended.
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.warning(
            "store operation failed after its caller was cancelled: %r", error
        )
