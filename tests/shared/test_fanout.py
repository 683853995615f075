"""The keyed fan-out: bounded watcher queues, lag, replay history."""

from __future__ import annotations

import asyncio

from services.shared.fanout import EventHub, Lagged, Published


async def test_every_watcher_of_a_key_gets_each_event() -> None:
    hub: EventHub[str] = EventHub()
    async with hub.subscribe("nb") as first, hub.subscribe("nb") as second:
        hub.publish("nb", 1, "a")

        got = [await first.next(), await second.next()]

    assert got == [Published(1, "a"), Published(1, "a")]


async def test_other_keys_are_not_delivered() -> None:
    hub: EventHub[str] = EventHub()
    async with hub.subscribe("nb") as watcher:
        hub.publish("other", 1, "x")
        hub.publish("nb", 1, "mine")

        got = await asyncio.wait_for(watcher.next(), timeout=1)

    assert got == Published(1, "mine")


async def test_a_watcher_that_falls_behind_is_told_it_lagged() -> None:
    hub: EventHub[int] = EventHub(queue_size=3)
    async with hub.subscribe("nb") as watcher:
        for revision in range(1, 6):
            hub.publish("nb", revision, revision)

        first = await watcher.next()
        after = await watcher.next()

    # The queue overflowed at event 4: 1-4 are dropped, 5 came after.
    assert isinstance(first, Lagged)
    assert after == Published(5, 5)


async def test_since_replays_from_history_or_says_it_cannot() -> None:
    hub: EventHub[int] = EventHub(history=3)
    for revision in range(1, 6):
        hub.publish("nb", revision, revision)

    assert [p.revision for p in hub.since("nb", 3) or []] == [4, 5]
    assert hub.since("nb", 1) is None
    assert hub.since("unknown", 0) is None


async def test_unsubscribing_removes_the_watcher() -> None:
    hub: EventHub[int] = EventHub()
    async with hub.subscribe("nb"):
        assert hub.watcher_count("nb") == 1

    assert hub.watcher_count("nb") == 0
