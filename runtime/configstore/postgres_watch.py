"""The PostgreSQL watch: ``LISTEN`` on a dedicated connection, catch up by revision.

The watcher fetches events after its cursor in batches, then waits for a notification (or a
fallback poll). Notifications are only a wake-up: the cursor decides what is read, so a lost
connection costs nothing but a reconnect (with a short, growing backoff), a new ``LISTEN`` and
one catch-up query; no event is lost or delivered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

import psycopg

from ..persistence.postgres import Conn
from .base import ResyncRequired, StoreError, WatchEvent
from .codec import WATCH_BATCH, make_event
from .postgres_schema import EVENTS, Statements

#: Reconnect delays (seconds): the first, and the cap it doubles towards.
BACKOFF_MIN: Final = 0.05
BACKOFF_MAX: Final = 2.0

_log = logging.getLogger(__name__)


class PgWatcher:
    """Runs watches for one store: how to connect, what to run, and whether the store closed."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[Conn]],
        statements: Statements,
        *,
        poll_interval: float,
        describe: Callable[[psycopg.Error], StoreError],
    ) -> None:
        self._connect = connect
        self._statements = statements
        self._fetch = statements(EVENTS)
        self._poll_interval = poll_interval
        self._describe = describe
        self._closing = asyncio.Event()

    def close(self) -> None:
        """End every running watch (with :class:`StoreError`) and refuse new ones."""
        self._closing.set()

    def _check_open(self) -> None:
        if self._closing.is_set():
            raise StoreError("the config store is closed")

    async def events(self, cursor: int) -> AsyncIterator[WatchEvent]:
        """Events with revision > ``cursor``, in order, until cancelled or the store closes."""
        conn: Conn | None = None
        delay = BACKOFF_MIN
        try:
            while True:
                self._check_open()
                try:
                    if conn is None:
                        conn = await self._connect()
                        await conn.execute(self._statements.listen)
                    cur = await conn.execute(self._fetch, (cursor, WATCH_BATCH))
                    rows = await cur.fetchall()
                except psycopg.Error as exc:
                    await self._recover(conn, exc, delay)
                    conn, delay = None, min(2 * delay, BACKOFF_MAX)
                    continue
                delay = BACKOFF_MIN
                compacted = int(rows[0][0])
                if cursor < compacted:
                    raise ResyncRequired(cursor, compacted)
                events = [make_event(row[1:]) for row in rows if row[1] is not None]
                for event in events:
                    yield event
                    cursor = event.revision
                if len(events) == WATCH_BATCH:
                    continue
                try:
                    await self._wait(conn)
                except psycopg.Error as exc:
                    await self._recover(conn, exc, delay)
                    conn, delay = None, min(2 * delay, BACKOFF_MAX)
        finally:
            if conn is not None:
                await conn.close()

    async def _recover(self, conn: Conn | None, exc: psycopg.Error, delay: float) -> None:
        """Drop a lost connection and wait ``delay`` seconds; re-raise any other error."""
        lost = isinstance(exc, psycopg.OperationalError) or conn is None or conn.broken
        if not lost:
            raise self._describe(exc) from None
        _log.warning("config store watch: %s; reconnecting in %.2fs", self._describe(exc), delay)
        if conn is not None:
            await conn.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), delay)

    async def _wait(self, conn: Conn) -> None:
        """Return on a notification, after the fallback poll interval, or when the store closes.

        Notifications that arrived while a query ran are kept by psycopg and end the wait at once.
        """
        waiter = asyncio.ensure_future(self._drain(conn))
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait((waiter, closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if not waiter.done():
                waiter.cancel()
                await asyncio.gather(waiter, return_exceptions=True)
        if not waiter.cancelled():
            waiter.result()  # raises what the wait raised (a lost connection)

    async def _drain(self, conn: Conn) -> None:
        async for _ in conn.notifies(timeout=self._poll_interval, stop_after=1):
            pass
