"""Keyed event fan-out (one key per notebook) with a short replay history.

Every change to a notebook is published here with the revision it produced.
Watchers each get a bounded queue: publishing never waits for a watcher, and
a watcher that falls more than `queue_size` events behind loses its queue and
is told it lagged, so it can send its client a fresh snapshot and carry on.
Memory is therefore bounded by (watchers x queue_size) plus the history.

A short history per notebook lets a reconnecting client ask for what it
missed since a revision; when the history no longer reaches that far back,
`since` says so and the caller sends a snapshot instead.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

T = TypeVar("T")


@dataclass(frozen=True)
class Published(Generic[T]):
    """One event with the revision it produced."""

    revision: int
    event: T


class Lagged:
    """Returned to a watcher whose queue overflowed: it must resynchronise."""


LAGGED = Lagged()


@dataclass(eq=False)
class Subscription(Generic[T]):
    """One watcher's queue of events for one notebook."""

    queue_size: int
    _items: deque[Published[T]] = field(default_factory=deque)
    _lagged: bool = False
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def _offer(self, item: Published[T]) -> None:
        if len(self._items) >= self.queue_size:
            self._items.clear()
            self._lagged = True
        else:
            self._items.append(item)
        self._ready.set()

    async def next(self) -> Published[T] | Lagged:
        """Wait for the next event, or LAGGED if events were dropped."""
        while not self._items and not self._lagged:
            self._ready.clear()
            await self._ready.wait()
        if self._lagged:
            self._lagged = False
            return LAGGED
        return self._items.popleft()


class EventHub(Generic[T]):
    """Fans notebook events out to watchers and remembers the recent ones."""

    def __init__(
        self, history: int = 256, queue_size: int = 1024, notebooks: int = 1024
    ) -> None:
        self._history_size = history
        self._queue_size = queue_size
        self._notebooks = notebooks
        # Least recently published last: the history of long-quiet notebooks
        # is forgotten first, which only costs their watchers a snapshot.
        self._history: OrderedDict[str, deque[Published[T]]] = OrderedDict()
        self._watchers: dict[str, set[Subscription[T]]] = {}

    def publish(self, notebook_id: str, revision: int, event: T) -> None:
        """Record an event and hand it to every watcher of the notebook."""
        item = Published(revision, event)
        history = self._history.pop(notebook_id, None)
        if history is None:
            history = deque(maxlen=self._history_size)
        history.append(item)
        self._history[notebook_id] = history
        while len(self._history) > self._notebooks:
            self._history.popitem(last=False)
        for watcher in self._watchers.get(notebook_id, ()):
            watcher._offer(item)

    def since(self, notebook_id: str, revision: int) -> list[Published[T]] | None:
        """The events after revision, or None if history does not reach back."""
        history = self._history.get(notebook_id)
        if not history or history[0].revision > revision + 1:
            return None
        return [item for item in history if item.revision > revision]

    def watcher_count(self, notebook_id: str) -> int:
        """How many watchers the notebook has."""
        return len(self._watchers.get(notebook_id, ()))

    @asynccontextmanager
    async def subscribe(self, notebook_id: str) -> AsyncIterator[Subscription[T]]:
        """Receive the notebook's events for as long as the block runs."""
        subscription: Subscription[T] = Subscription(self._queue_size)
        self._watchers.setdefault(notebook_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            watchers = self._watchers[notebook_id]
            watchers.discard(subscription)
            if not watchers:
                del self._watchers[notebook_id]
