"""One change stream per notebook across notebook replicas: a Redis stream.

With one notebook process, WatchNotebook is fed by the in-process hub
(``services/shared/fanout.py``). With several replicas sharing a store, an
edit may be made on any of them, so every replica appends the events of each
write it stored to the notebook's Redis stream, and a watcher on any replica
reads that stream. The stream's entry ids are ``<revision>-<n>``: Redis
refuses an id that is not above the stream's last, so the stream is in
revision order by construction, each event has one place in it (a watcher
reads on from the last id it got: exactly once), and a client that
reconnects anywhere resumes from the revision it last saw.

How it fails, and why that loses nothing:

* The store is the truth, the stream its log: an edit is acknowledged once
  the store took it, then its events are appended. A replica that dies in
  between, a Redis that is down, or an append that arrives after a later
  revision's (refused: out of order) leaves a revision out of the stream.
  A watcher notices the hole (the next event skips a revision, or, with
  nothing else happening, the store's revision is ahead of the stream's
  after ``poll_s`` of quiet) and sends a fresh snapshot, as it does when a
  client asks for history the stream no longer keeps (``history`` events
  per notebook, ``ttl_s`` after its last write). So a client may get a
  snapshot in place of some events, never a silent gap.
* Redis down for a watcher: its stream ends with UNAVAILABLE and the client
  reconnects with its revision.

Each watcher blocks on its own XREAD (one pooled connection each); at many
watchers per replica one reader per notebook would share them.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from reflow.notebook.v1 import notebook_pb2
from services.notebook import convert
from services.shared.errors import Unavailable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

    from services.notebook.changes import Change, Snapshot

logger = logging.getLogger(__name__)

KEY_PREFIX: Final = "reflow:notebook-changes:"
_LAST_OF_REVISION: Final = 2**64 - 1
"""The largest sequence number: ``f"{r}-{_LAST_OF_REVISION}"`` is after every
event of revision r."""
_FIELD: Final = b"event"


@asynccontextmanager
async def open_feed(redis_url: str | None) -> AsyncIterator[RedisChangeFeed | None]:
    """The change feed at ``redis_url`` for the block; None without one."""
    if redis_url is None:
        yield None
        return
    redis = Redis.from_url(redis_url)
    try:
        yield RedisChangeFeed(redis)
    finally:
        await redis.aclose()


class RedisChangeFeed:
    """Appends notebooks' changes to Redis streams and follows them."""

    def __init__(
        self,
        redis: Redis,
        history: int = 1000,
        poll_s: float = 5.0,
        ttl_s: int = 7 * 24 * 3600,
        prefix: str = KEY_PREFIX,
    ) -> None:
        self._redis = redis
        self._history = history
        self._poll_ms = max(1, int(poll_s * 1000))
        self._ttl_s = ttl_s
        self._prefix = prefix

    async def publish(self, changes: Sequence[Change]) -> None:
        """Append the events of one stored write, all or none of them.

        Never raises: the write is stored already, and a missing event is
        made up for by a snapshot (module docstring).
        """
        if not changes:
            return
        notebook_id = changes[0].notebook.id
        key = self._key(notebook_id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for change in changes:
                    pipe.xadd(
                        key,
                        {_FIELD: convert.change_to_proto(change).SerializeToString()},
                        id=f"{change.revision}-*",
                        maxlen=self._history,
                        approximate=True,
                    )
                pipe.expire(key, self._ttl_s)
                await pipe.execute()
        except ResponseError as error:
            # Another replica appended a later revision first.
            logger.warning(
                "revision %d of %s left out of its change stream: %s",
                changes[0].revision,
                notebook_id,
                error,
            )
        except RedisError as error:
            logger.warning(
                "the change stream of %s is unavailable: %s", notebook_id, error
            )

    async def watch(
        self,
        notebook_id: str,
        since_revision: int,
        snapshot: Callable[[], Awaitable[Snapshot]],
    ) -> AsyncIterator[notebook_pb2.WatchNotebookResponse]:
        """What WatchNotebook streams: the missed events since
        ``since_revision`` (or a snapshot), then every change, until the
        notebook is deleted. ``snapshot`` loads the notebook for its owner
        (and raises NotFound for anyone else)."""
        current = await snapshot()
        key = self._key(notebook_id)
        try:
            missed = await self._missed(key, since_revision, current.revision)
            if missed is None:
                yield convert.snapshot_event(current)
                cursor, last = _after(current.revision), current.revision
            else:
                cursor, last = _after(since_revision), since_revision
                for entry_id, event in missed:
                    yield event
                    cursor, last = entry_id, _revision(entry_id)
            while True:
                entries = await self._read(key, cursor)
                if not entries:
                    current = await snapshot()
                    if current.revision > last:
                        yield convert.snapshot_event(current)
                        cursor, last = _after(current.revision), current.revision
                    continue
                for entry_id, event in entries:
                    if _revision(entry_id) > last + 1:
                        current = await snapshot()
                        yield convert.snapshot_event(current)
                        cursor, last = _after(current.revision), current.revision
                        break
                    yield event
                    if event.WhichOneof("event") == "notebook_deleted":
                        return
                    cursor, last = entry_id, _revision(entry_id)
        except RedisError as error:
            logger.warning("the change stream of %s failed: %s", notebook_id, error)
            raise Unavailable(
                "the notebook's change stream is unavailable, watch again",
                reason="CHANGE_STREAM_UNAVAILABLE",
            ) from error

    async def _missed(
        self, key: str, since: int, current: int
    ) -> list[tuple[str, notebook_pb2.WatchNotebookResponse]] | None:
        """The events after ``since`` if the stream holds all up to
        ``current``; None if the client needs a snapshot."""
        if since <= 0 or since > current:
            return None
        raw: Any = await self._redis.xrange(key, min=f"{since + 1}-0", max="+")
        entries = [_decoded(entry) for entry in raw]
        reached = since
        for entry_id, _ in entries:
            if _revision(entry_id) > reached + 1:
                return None
            reached = _revision(entry_id)
        return entries if reached >= current else None

    async def _read(
        self, key: str, cursor: str
    ) -> list[tuple[str, notebook_pb2.WatchNotebookResponse]]:
        reply: Any = await self._redis.xread(
            {key: cursor}, count=100, block=self._poll_ms
        )
        if not reply:
            return []
        # One key asked for: [[key, [(id, fields), ...]]].
        raw: list[Any] = reply[0][1]
        return [_decoded(entry) for entry in raw]

    def _key(self, notebook_id: str) -> str:
        return f"{self._prefix}{notebook_id}"


def _decoded(
    entry: tuple[bytes, dict[bytes, bytes]],
) -> tuple[str, notebook_pb2.WatchNotebookResponse]:
    """A stream entry as (id, event); the client does not decode replies."""
    entry_id, fields = entry
    return entry_id.decode(), notebook_pb2.WatchNotebookResponse.FromString(
        fields[_FIELD]
    )


def _revision(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


def _after(revision: int) -> str:
    return f"{revision}-{_LAST_OF_REVISION}"
