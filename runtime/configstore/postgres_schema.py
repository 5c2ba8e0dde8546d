"""The config store's PostgreSQL statements (the tables, and what SQLite runs alike, are
:mod:`.schema`'s), and :class:`Statements` to bind them to the tables of one prefix.

Writers lock the counter row first (so revisions commit in order), stamp rows with the database
clock and ``pg_notify`` the channel in the same transaction, so watchers hear of a revision
only once it is visible.
"""

from __future__ import annotations

from typing import Final

from psycopg import sql

from ..persistence.postgres import Conn, add_columns, create_missing_tables, lock_id
from . import schema

SNAPSHOT: Final = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
# Locks the counter (serializing writers) and reads the live entry of one bot.
LIVE: Final = schema.LIVE + " FOR UPDATE OF m"
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
HEARTBEAT: Final = (
    "INSERT INTO {replicas} VALUES (%s, %s, now()) ON CONFLICT (replica_id) DO UPDATE SET"
    " synced_revision = EXCLUDED.synced_revision, heartbeat_at = EXCLUDED.heartbeat_at"
)
REPORTS: Final = (
    "SELECT r.replica_id, r.synced_revision, r.heartbeat_at, b.bot_id, b.generation,"
    " b.revision, b.error, b.error_revision, b.served_by, b.reason, b.tools, b.rollout"
    " FROM {replicas} AS r LEFT JOIN {replica_bots} AS b"
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


_TYPES: Final = {
    "key": 'text COLLATE "C"',
    "text": "text",
    "json": "jsonb",
    "int": "bigint",
    "time": "timestamptz",
    "bool": "boolean",
}


class Statements:
    """Templates (these and :mod:`.schema`'s) bound to the tables of one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.tables = [prefix + t for t in schema.TABLES]
        names = {t: sql.Identifier(prefix + t) for t in (*schema.TABLES, "events_at")}
        self.names: dict[str, sql.Composable] = {
            **names,
            **{k: sql.SQL(v) for k, v in _TYPES.items()},
        }
        self.channel = prefix + "events"
        self.listen = sql.SQL("LISTEN {}").format(sql.Identifier(self.channel))
        self.lock_id = lock_id(prefix, "config-store")

    def __call__(self, template: str) -> sql.Composed:
        """``template`` with its table names filled in."""
        return sql.SQL(template).format(**self.names)

    async def create_tables(self, conn: Conn) -> None:
        """Create the tables unless they all exist, and give a ``replica_bots`` table of an
        older release its new columns (a role with only DML rights can use tables that have
        them)."""
        await create_missing_tables(conn, self.lock_id, self.tables, map(self, schema.SCHEMA))
        replica_bots = self.prefix + "replica_bots"
        added = dict.fromkeys(schema.REPLICA_BOT_COLUMNS, "text")
        await add_columns(conn, self.lock_id, replica_bots, added)
