"""The PostgreSQL schema and statements of the config store, and error hygiene.

Statements are templates whose ``{meta}``, ``{state}``, ``{events}``, ``{replicas}`` and
``{replica_bots}`` stand for the prefixed tables. Writers lock the counter row first (so
revisions commit in order), stamp rows with the database clock and ``pg_notify`` the channel in
the same transaction, so watchers hear of a revision only once it is visible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from ..storage._pool import open_pool as open_checked_pool
from ..storage._sql import redact
from .base import StoreError

Conn = psycopg.AsyncConnection[TupleRow]

_TABLES: Final = ("meta", "state", "events", "replicas", "replica_bots")

SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS {meta} (id integer PRIMARY KEY CHECK (id = 1),"
    " revision bigint NOT NULL, compacted bigint NOT NULL)",
    "INSERT INTO {meta} VALUES (1, 0, 0) ON CONFLICT (id) DO NOTHING",
    'CREATE TABLE IF NOT EXISTS {state} (bot_id text COLLATE "C" PRIMARY KEY,'
    " config jsonb NOT NULL, generation bigint NOT NULL, uid text NOT NULL,"
    " annotations jsonb NOT NULL, revision bigint NOT NULL, updated_at timestamptz NOT NULL,"
    " deleted boolean NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {events} (revision bigint PRIMARY KEY, type text NOT NULL,"
    ' bot_id text COLLATE "C" NOT NULL, config jsonb, generation bigint, uid text,'
    " annotations jsonb, created_at timestamptz NOT NULL)",
    "CREATE INDEX IF NOT EXISTS {events_at} ON {events} (created_at)",
    'CREATE TABLE IF NOT EXISTS {replicas} (replica_id text COLLATE "C" PRIMARY KEY,'
    " synced_revision bigint NOT NULL, heartbeat_at timestamptz NOT NULL)",
    'CREATE TABLE IF NOT EXISTS {replica_bots} (replica_id text COLLATE "C" NOT NULL,'
    ' bot_id text COLLATE "C" NOT NULL, generation bigint, revision bigint, error text,'
    " error_revision bigint, PRIMARY KEY (replica_id, bot_id))",
)

_ENTRY: Final = "bot_id, config, generation, uid, annotations, revision, updated_at"
GET: Final = f"SELECT {_ENTRY} FROM {{state}} WHERE bot_id = %s AND NOT deleted"
LIST: Final = f"SELECT {_ENTRY} FROM {{state}} WHERE NOT deleted ORDER BY bot_id"
REVISION: Final = "SELECT revision, compacted FROM {meta} WHERE id = 1"
SNAPSHOT: Final = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
# Locks the counter (serializing writers) and reads the live entry of one bot.
LIVE: Final = (
    "SELECT m.revision, s.bot_id, s.config, s.generation, s.uid, s.annotations, s.revision,"
    " s.updated_at FROM {meta} AS m LEFT JOIN {state} AS s ON s.bot_id = %s AND NOT s.deleted"
    " WHERE m.id = 1 FOR UPDATE OF m"
)
_BUMP: Final = (
    "WITH r AS (UPDATE {meta} SET revision = revision + 1 WHERE id = 1"
    " RETURNING revision, clock_timestamp() AS at), "
)
_NOTIFY: Final = " SELECT r.revision, pg_notify(%(channel)s, r.revision::text) FROM r"
PUT: Final = (
    _BUMP + "s AS (INSERT INTO {state} SELECT %(bot)s, %(config)s::jsonb, %(generation)s,"
    " %(uid)s, %(annotations)s::jsonb, r.revision, r.at, false FROM r ON CONFLICT (bot_id)"
    " DO UPDATE SET config = EXCLUDED.config, generation = EXCLUDED.generation,"
    " uid = EXCLUDED.uid, annotations = EXCLUDED.annotations, revision = EXCLUDED.revision,"
    " updated_at = EXCLUDED.updated_at, deleted = false),"
    " e AS (INSERT INTO {events} SELECT r.revision, 'PUT', %(bot)s, %(config)s::jsonb,"
    " %(generation)s, %(uid)s, %(annotations)s::jsonb, r.at FROM r)" + _NOTIFY
)
DELETE: Final = (
    _BUMP + "s AS (UPDATE {state} AS s SET deleted = true, revision = r.revision,"
    " updated_at = r.at FROM r WHERE s.bot_id = %(bot)s),"
    " e AS (INSERT INTO {events} (revision, type, bot_id, created_at)"
    " SELECT r.revision, 'DELETE', %(bot)s, r.at FROM r)" + _NOTIFY
)
# One statement, one snapshot: the compacted revision and the next batch of events.
EVENTS: Final = (
    "SELECT m.compacted, e.revision, e.type, e.bot_id, e.config, e.generation, e.uid,"
    " e.annotations, e.created_at FROM {meta} AS m LEFT JOIN LATERAL (SELECT * FROM {events}"
    " WHERE revision > %s ORDER BY revision LIMIT %s) AS e ON true WHERE m.id = 1"
    " ORDER BY e.revision"
)
LOCK_COMPACTED: Final = "SELECT compacted FROM {meta} WHERE id = 1 FOR UPDATE"
OLDEST: Final = (
    "SELECT max(revision) FROM {events}"
    " WHERE created_at <= clock_timestamp() - make_interval(secs => %s)"
)
COMPACT: Final = (
    "DELETE FROM {events} WHERE revision <= %s",
    "DELETE FROM {state} WHERE deleted AND revision <= %s",
    "UPDATE {meta} SET compacted = %s WHERE id = 1",
)
HEARTBEAT: Final = (
    "INSERT INTO {replicas} VALUES (%s, %s, now()) ON CONFLICT (replica_id) DO UPDATE SET"
    " synced_revision = EXCLUDED.synced_revision, heartbeat_at = EXCLUDED.heartbeat_at"
)
CLEAR_BOTS: Final = "DELETE FROM {replica_bots} WHERE replica_id = %s"
BOT: Final = "INSERT INTO {replica_bots} VALUES (%s, %s, %s, %s, %s, %s)"
REPORTS: Final = (
    "SELECT r.replica_id, r.synced_revision, r.heartbeat_at, b.bot_id, b.generation,"
    " b.revision, b.error, b.error_revision FROM {replicas} AS r LEFT JOIN {replica_bots} AS b"
    " ON b.replica_id = r.replica_id WHERE r.heartbeat_at > now() - make_interval(secs => %s)"
    " ORDER BY r.replica_id, b.bot_id"
)
# Replica rows go first, in the order report() locks them, so the two never deadlock.
EXPIRE: Final = (
    "WITH gone AS (DELETE FROM {replicas}"
    " WHERE heartbeat_at <= now() - make_interval(secs => %s) RETURNING replica_id),"
    " bots AS (DELETE FROM {replica_bots} WHERE replica_id IN (SELECT replica_id FROM gone))"
    " SELECT count(*) FROM gone"
)


class Statements:
    """The statements above, bound to the tables of one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.names = {t: sql.Identifier(prefix + t) for t in _TABLES}
        self.names["events_at"] = sql.Identifier(prefix + "events_at")
        self.tables = [prefix + t for t in _TABLES]
        self.channel = prefix + "events"
        self.listen = sql.SQL("LISTEN {}").format(sql.Identifier(self.channel))
        self.lock_id = lock_id(prefix, "config-store")

    def __call__(self, template: str) -> sql.Composed:
        """``template`` with its table names filled in."""
        return sql.SQL(template).format(**self.names)


def lock_id(*parts: str) -> int:
    """A stable signed 64-bit advisory-lock id for ``parts`` (the same in every process)."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def ensure_schema(conn: Conn, statements: Statements) -> None:
    """Create the tables unless they all exist (a role with only DML rights can use them).

    An advisory lock serializes concurrent openers: ``CREATE TABLE IF NOT EXISTS`` alone races.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (statements.lock_id,))
        cur = await conn.execute(
            "SELECT count(to_regclass(t)) FROM unnest(%s::text[]) AS t", (statements.tables,)
        )
        found = await cur.fetchone()
        if found is not None and found[0] == len(statements.tables):
            return
        for template in SCHEMA:
            await conn.execute(statements(template))


def connect_options(connect_timeout: float) -> dict[str, Any]:
    """Connection options of every store connection (autocommit: transactions are explicit)."""
    return {"autocommit": True, "connect_timeout": max(1, round(connect_timeout))}


async def open_pool(
    url: str,
    statements: Statements,
    options: dict[str, Any],
    size: int,
    secrets: Sequence[str],
) -> AsyncConnectionPool[Conn]:
    """Create the tables if missing, then open a pool of at most ``size`` connections.

    One direct connection comes first: it fails fast with libpq's reason, where a pool would
    retry in the background until its timeout. Errors never quote credentials.
    """

    async def setup(conn: Conn) -> None:
        await ensure_schema(conn, statements)

    return await open_checked_pool(
        url,
        options=options,
        size=size,
        name=f"kubebots-store-{statements.prefix}",
        setup=setup,
        error=lambda exc: error("connection", exc, secrets),
    )


def error(what: str, exc: psycopg.Error, secrets: Sequence[str]) -> StoreError:
    """A :class:`StoreError` for ``exc`` that holds no credentials and no row values.

    libpq quotes malformed connection strings back, so their errors get a fixed text.
    """
    if what == "connection" and isinstance(exc, psycopg.ProgrammingError) and not exc.sqlstate:
        return StoreError(f"PostgreSQL {what} failed: the connection URL is malformed")
    text = exc.diag.message_primary or str(exc).strip() or type(exc).__name__
    state = f" [{exc.sqlstate}]" if exc.sqlstate else ""
    return StoreError(f"PostgreSQL {what} failed{state}: {redact(text, secrets)}")
