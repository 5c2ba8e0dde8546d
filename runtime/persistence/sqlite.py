"""SQLite the one way every kubebots store uses it: one file, WAL, one shared connection.

Connections run in autocommit mode (transactions are explicit) and wait up to ``busy_timeout``
seconds for other processes' writers instead of failing. A store shares one connection between
its calls: :class:`SharedConnection` holds it exclusively per call (an :class:`asyncio.Lock`
keeps transactions from interleaving) and turns SQLite errors into the store's error class.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Generic, TypeVar

import aiosqlite

from ..errors import StorageError
from .owner import Owner

E = TypeVar("E", bound=StorageError)


async def open_sqlite(
    path: Path, owner: Owner[E], *, busy_timeout: float, prepare: Sequence[str] = ()
) -> aiosqlite.Connection:
    """A connection to the database at ``path`` (made with its directory if missing) that ran
    the ``prepare`` statements; failures are the owner's error naming the file."""
    error = owner.error
    try:
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        conn = await aiosqlite.connect(str(path), isolation_level=None, timeout=busy_timeout)
    except (OSError, sqlite3.Error) as exc:
        raise error(f"cannot open SQLite database {str(path)!r}: {exc}") from exc
    try:
        for statement in (f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}", *prepare):
            await conn.execute(statement)
    except sqlite3.Error as exc:
        await conn.close()
        raise error(f"cannot prepare SQLite database {str(path)!r}: {exc}") from exc
    return conn


#: The column types a table may gain (a nullable column of one of these, old rows read NULL).
COLUMN_TYPES = frozenset({"TEXT", "INTEGER"})


async def add_columns(conn: aiosqlite.Connection, table: str, columns: Mapping[str, str]) -> None:
    """Give ``table`` (made by an older release) the nullable ``columns`` (name -> type, one of
    :data:`COLUMN_TYPES`) it lacks. Run it in a write transaction, so processes opening the
    file at once add them once; ``table`` and the names are checked identifiers (not quoted)."""
    if not set(columns.values()) <= COLUMN_TYPES:
        raise ValueError(f"a column type must be one of {sorted(COLUMN_TYPES)}")
    rows = await conn.execute_fetchall(f"PRAGMA table_info({table})")
    have = {str(row[1]) for row in rows}
    for column, kind in columns.items():
        if column not in have:
            await conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


class SharedConnection(Generic[E]):
    """One connection shared by a store's calls, one call at a time."""

    def __init__(self, conn: aiosqlite.Connection, owner: Owner[E]) -> None:
        self._conn: aiosqlite.Connection | None = conn
        self._owner = owner
        self._lock = asyncio.Lock()

    @property
    def closed(self) -> bool:
        return self._conn is None

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, held exclusively; SQLite errors become the store's error."""
        async with self._lock:
            if self._conn is None:
                raise self._owner.closed()
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise self._owner.error(f"SQLite {self._owner.what} failed: {exc}") from exc

    @asynccontextmanager
    async def transaction(
        self, begin: str = "BEGIN IMMEDIATE"
    ) -> AsyncIterator[aiosqlite.Connection]:
        """The connection inside a transaction: committed on success, rolled back on error.

        ``BEGIN IMMEDIATE`` takes the write lock at once, serializing writers of every process.
        """
        async with self.hold() as conn:
            try:
                # Inside the try: a call cancelled while waiting for BEGIN still began the
                # transaction in aiosqlite's worker thread. A rollback without one is a no-op.
                await conn.execute(begin)
                yield conn
            except BaseException:
                await conn.rollback()
                raise
            await conn.commit()

    async def close(self) -> None:
        """Close the connection after the call holding it finishes. Idempotent."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()
