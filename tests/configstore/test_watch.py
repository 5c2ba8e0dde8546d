"""Watches and compaction, on every backend: ordered, gap-free, exactly once."""

from __future__ import annotations

import asyncio

import pytest

from kubebots.runtime.configstore.base import ConfigStore, ResyncRequired, StoreError, WatchEvent

from .util import WAIT, StoreFactory, revisions, take, watching


async def test_a_watch_from_zero_replays_everything_in_order(store: ConfigStore) -> None:
    await store.put("a", {"v": 1}, generation=1, uid="ua", annotations={"s": "x"})
    await store.put("b", {"v": 2}, generation=7, uid="ub")
    await store.delete("a")
    await store.put("a", {"v": 3}, generation=1, uid="ua2")

    events = await take(store, 0, 4)
    assert [(e.type, e.bot_id, e.revision) for e in events] == [
        ("PUT", "a", 1),
        ("PUT", "b", 2),
        ("DELETE", "a", 3),
        ("PUT", "a", 4),
    ]
    first, second, deleted, last = events
    assert first.entry is not None and first.entry.annotations == {"s": "x"}
    assert second.entry is not None
    assert (second.entry.config, second.entry.generation, second.entry.uid) == ({"v": 2}, 7, "ub")
    assert second.entry.revision == 2 and second.entry.updated_at.utcoffset() is not None
    assert deleted.entry is None
    assert last.entry == await store.get("a")
    assert revisions(await take(store, 2, 2)) == [3, 4]


async def test_a_live_watch_sees_each_write_as_it_happens(store: ConfigStore) -> None:
    await store.put("old", {}, generation=1, uid="u")
    queue: asyncio.Queue[WatchEvent] = asyncio.Queue()

    start = await store.current_revision()

    async def follow() -> None:
        async with watching(store, start) as watch:
            async for event in watch:
                queue.put_nowait(event)

    follower = asyncio.create_task(follow())
    try:
        for n in range(2, 7):
            if n % 3 == 0:
                revision = await store.delete("old" if n == 3 else "bot")
            else:
                revision = await store.put("bot", {"n": n}, generation=n, uid="u")
            event = await asyncio.wait_for(queue.get(), WAIT)  # before the next write
            assert event.revision == revision == n
        assert queue.empty()
    finally:
        follower.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follower


async def test_two_writers_and_a_watcher_see_every_revision_once(
    open_store: StoreFactory,
) -> None:
    """Two instances (two processes, for SQLite and PostgreSQL) write 2 x 200 times at once;
    a watcher on a third sees revisions 1..400 exactly once, in order."""
    first, second, watcher = await open_store(), await open_store(), await open_store()
    per_writer = 200

    async def write(store: ConfigStore, name: str) -> list[int]:
        return [
            await store.put(f"{name}-{n % 7}", {"n": n}, generation=n + 1, uid=name)
            for n in range(per_writer)
        ]

    watched = asyncio.create_task(take(watcher, 0, 2 * per_writer))
    written = await asyncio.wait_for(asyncio.gather(write(first, "one"), write(second, "two")), 120)
    events = await asyncio.wait_for(watched, 120)
    assert revisions(events) == list(range(1, 2 * per_writer + 1))
    assert sorted(written[0] + written[1]) == revisions(events)
    for returned in written:
        assert returned == sorted(returned)
    by_revision = {e.revision: e for e in events}
    for name, returned in zip(("one", "two"), written, strict=True):
        for n, revision in enumerate(returned):
            entry = by_revision[revision].entry
            assert entry is not None and entry.bot_id == f"{name}-{n % 7}"
            assert entry.config == {"n": n}
    assert await watcher.current_revision() == 2 * per_writer


async def test_a_watch_catches_up_in_batches(store: ConfigStore) -> None:
    total = 1234  # more than one batch of 1000
    for n in range(total):
        await store.put(f"bot-{n % 10}", {"n": n}, generation=n + 1, uid="u")
    events = await take(store, 0, total, within=120)
    assert revisions(events) == list(range(1, total + 1))
    assert revisions(await take(store, total - 3, 3)) == [total - 2, total - 1, total]


async def test_compaction_forgets_old_history(store: ConfigStore) -> None:
    for n in range(1, 4):
        await store.put(f"b{n}", {}, generation=1, uid="u")
    await store.delete("b1")
    assert await store.compact(3600) == 0  # nothing is that old
    assert revisions(await take(store, 0, 4)) == [1, 2, 3, 4]

    assert await store.compact(0) == 4
    with pytest.raises(ResyncRequired) as caught:
        await take(store, 0, 1)
    assert (caught.value.from_revision, caught.value.compacted_revision) == (0, 4)
    with pytest.raises(ResyncRequired):
        await take(store, 3, 1)
    assert await store.compact(3600) == 4  # never decreases
    entries, revision = await store.list()
    assert [e.bot_id for e in entries] == ["b2", "b3"] and revision == 4
    assert await store.get("b1") is None

    # Watching from the compacted revision works, and a compacted tombstone can be re-created.
    follower = asyncio.create_task(take(store, revision, 2))
    await store.put("b1", {"again": True}, generation=1, uid="u")
    await store.put("b4", {}, generation=1, uid="u")
    assert [(e.bot_id, e.revision) for e in await follower] == [("b1", 5), ("b4", 6)]


async def test_compaction_keeps_the_retention_window(store: ConfigStore) -> None:
    await store.put("old", {}, generation=1, uid="u")
    await store.delete("old")
    await asyncio.sleep(1.0)
    await store.put("new", {}, generation=1, uid="u")
    assert await store.compact(0.8) == 2  # the new write is younger than 0.8 s
    events = await take(store, 2, 1)
    assert [(e.bot_id, e.revision) for e in events] == [("new", 3)]


async def test_a_watcher_overtaken_by_compaction_must_resync(store: ConfigStore) -> None:
    for n in range(1, 6):
        await store.put("bot", {"n": n}, generation=n, uid="u")
    seen: list[int] = []
    with pytest.raises(ResyncRequired):
        async with asyncio.timeout(WAIT), watching(store, 0) as watch:
            async for event in watch:
                seen.append(event.revision)
                if event.revision == 1:
                    await store.put("bot", {"n": 6}, generation=6, uid="u")
                    assert await store.compact(0) == 6
    # Events fetched before the compaction may still arrive; none is skipped silently.
    assert seen == list(range(1, len(seen) + 1))
    assert len(seen) < 6


async def test_closing_the_store_ends_its_watches(store: ConfigStore) -> None:
    started = asyncio.Event()

    async def follow() -> None:
        async with watching(store, 0) as watch:
            started.set()
            async for _ in watch:
                pass

    follower = asyncio.create_task(follow())
    await asyncio.wait_for(started.wait(), WAIT)
    await asyncio.sleep(0.2)  # the watch is waiting now
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await asyncio.wait_for(follower, WAIT)
