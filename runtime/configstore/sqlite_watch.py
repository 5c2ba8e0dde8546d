"""The SQLite watch: a connection of its own, a look at the counter every poll interval.

A look is a query through aiosqlite's worker thread; it is skipped while the database files are
unchanged (see :func:`file_signature`), so idle watches cost a ``stat`` per interval.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..persistence.owner import Owner
from ..persistence.sqlite import open_sqlite
from ..persistence.times import from_micros
from .base import ResyncRequired, StoreError, WatchEvent
from .codec import WATCH_BATCH, make_event
from .schema import REVISION
from .sqlite_schema import EVENTS, Db, Statements

#: a watch queries the counter at least this often even when the files look unchanged
FORCED_LOOK_S: Final = 1.0


def file_signature(path: Path) -> tuple[int, ...]:
    """(mtime_ns, size) of the database and its WAL: a commit changes one of them.

    A stat is a syscall on the event loop (~µs); the counter query it saves is two thread hops
    through aiosqlite (~1 ms of a loaded loop). Missing files read as zeros.
    """
    out: list[int] = []
    for p in (path, path.with_name(path.name + "-wal")):
        try:
            st = p.stat()
        except OSError:
            out += [0, 0]
        else:
            out += [st.st_mtime_ns, st.st_size]
    return tuple(out)


@dataclass(frozen=True, slots=True)
class SqliteWatcher:
    """Runs watches for one store file: where it is, and how often to look."""

    path: Path
    sql: Statements
    busy_timeout: float
    poll_interval: float

    async def events(self, cursor: int, is_open: Callable[[], bool]) -> AsyncIterator[WatchEvent]:
        """Events after ``cursor`` on a connection of their own: a look at the counter every
        ``poll_interval`` seconds, a batch query when it moved. Ends with :class:`StoreError`
        once ``is_open()`` turns false.

        A look is skipped while the files' :func:`file_signature` is unchanged since the last
        look, but never for longer than :data:`FORCED_LOOK_S` (a timestamp's granularity could
        hide a commit that rewrote the WAL at the same size)."""
        owner = Owner(StoreError, "config store watch")
        conn = await open_sqlite(self.path, owner, busy_timeout=self.busy_timeout)
        db = Db(conn, self.sql)
        loop = asyncio.get_running_loop()
        seen: tuple[int, ...] | None = None
        looked = 0.0
        try:
            while True:
                if not is_open():
                    raise StoreError("the config store is closed")
                signature = file_signature(self.path)
                if signature == seen and loop.time() - looked < FORCED_LOOK_S:
                    await asyncio.sleep(self.poll_interval)
                    continue
                seen, looked = signature, loop.time()
                try:
                    revision, compacted = await db.one(REVISION)
                    if cursor < compacted:
                        raise ResyncRequired(cursor, compacted)
                    if revision <= cursor:
                        await asyncio.sleep(self.poll_interval)
                        continue
                    rows = await db.rows(EVENTS, (cursor, WATCH_BATCH))
                except sqlite3.Error as exc:
                    raise owner.error(f"SQLite {owner.what} failed: {exc}") from exc
                compacted = rows[0][0]
                if cursor < compacted:  # compacted since the look at the counter
                    raise ResyncRequired(cursor, compacted)
                for _, *event, created_at in rows:
                    if event[0] is not None:
                        yield make_event((*event, from_micros(created_at)))
                        cursor = event[0]
        finally:
            await db.conn.close()
