"""Who has a notebook open: the viewers of its watch streams.

A WatchNotebook stream that asks for presence takes a *seat* once the
notebook has been read as the caller's (so nobody can appear in a notebook
that is not theirs), and gives it up when the stream ends, however it ends.
Every seat of the notebook is then told that the company changed; each
stream sends the current list as a presence event. A change only sets a
flag per seat, so a burst of joins and leaves costs a watcher one event, and
nothing queues up for a slow one.

Presence is this replica's: Envoy routes every stream of one notebook to the
same notebook replica (consistent hash on the id), so that is everyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

T = TypeVar("T")


@dataclass(eq=False)
class Seat:
    """One stream's place in a notebook's company."""

    viewer_id: str
    user: str
    since: float
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class PresenceBoard:
    """The seats of every watched notebook."""

    def __init__(self) -> None:
        self._seats: dict[str, list[Seat]] = {}
        self._numbers = itertools.count(1)

    def viewers(self, notebook_id: str) -> list[Seat]:
        """The notebook's seats, oldest first."""
        return list(self._seats.get(notebook_id, ()))

    @contextlib.contextmanager
    def seat(self, notebook_id: str, user: str) -> Iterator[Seat]:
        """Hold a seat while the block runs; everyone there hears of it."""
        seat = Seat(f"v{next(self._numbers)}", user, time.time())
        seats = self._seats.setdefault(notebook_id, [])
        seats.append(seat)
        self._tell(seats)
        try:
            yield seat
        finally:
            seats.remove(seat)
            if seats:
                self._tell(seats)
            elif self._seats.get(notebook_id) is seats:
                del self._seats[notebook_id]

    @staticmethod
    def _tell(seats: list[Seat]) -> None:
        for seat in seats:
            seat.changed.set()


class PresenceChanged:
    """Marks, in a merged stream, that the seat's company changed."""


PRESENCE_CHANGED = PresenceChanged()


async def with_presence(
    events: AsyncIterator[T], seat: Seat
) -> AsyncIterator[T | PresenceChanged]:
    """`events` as they come, with PRESENCE_CHANGED whenever the company
    changes (at once if it changed before the first call)."""
    upcoming: asyncio.Future[T] = asyncio.ensure_future(anext(events))
    waiting: asyncio.Task[bool] | None = None
    try:
        while True:
            waiting = asyncio.ensure_future(seat.changed.wait())
            both: set[asyncio.Future[Any]] = {upcoming, waiting}
            await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
            if waiting.done():
                seat.changed.clear()
                yield PRESENCE_CHANGED
            else:
                waiting.cancel()
            if upcoming.done():
                try:
                    item = upcoming.result()
                except StopAsyncIteration:
                    return
                yield item
                upcoming = asyncio.ensure_future(anext(events))
    finally:
        for pending in (upcoming, waiting):
            if pending is not None:
                pending.cancel()
