"""Helpers for the config store tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from kubebots.runtime.configstore.base import ReportingConfigStore, WatchEvent

#: Opens one more store on the same location (same SQLite file, same PostgreSQL tables).
StoreFactory = Callable[[], Awaitable[ReportingConfigStore]]

#: Generous bound for anything a test waits for (a loaded 2-core machine is slow).
WAIT = 10.0


async def take(
    store: ReportingConfigStore,
    from_revision: int,
    count: int,
    *,
    into: list[WatchEvent] | None = None,
    within: float = WAIT,
) -> list[WatchEvent]:
    """The first ``count`` events of a watch from ``from_revision``, appended to ``into`` as
    they arrive (so callers can follow progress); fails after ``within`` seconds."""
    events: list[WatchEvent] = [] if into is None else into
    if count == 0:
        return events
    async with asyncio.timeout(within), watching(store, from_revision) as watch:
        async for event in watch:
            events.append(event)
            if len(events) == count:
                break
    return events


@contextlib.asynccontextmanager
async def watching(
    store: ReportingConfigStore, from_revision: int
) -> AsyncIterator[AsyncIterator[WatchEvent]]:
    """A watch that is closed (its connection released) when the block ends."""
    watch = store.watch(from_revision)
    try:
        yield watch
    finally:
        await watch.aclose()  # type: ignore[attr-defined]


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until true; fail after ``WAIT`` seconds."""
    async with asyncio.timeout(WAIT):
        while not await check():
            await asyncio.sleep(0.05)
    assert await check(), what


def revisions(events: list[WatchEvent]) -> list[int]:
    return [e.revision for e in events]
