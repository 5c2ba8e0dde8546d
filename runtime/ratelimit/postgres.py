"""A :class:`~kubebots.runtime.ratelimit.base.RateLimiter` shared by replicas through PostgreSQL.

Each call is one statement (one round trip): a PL/pgSQL function, created with the table, that
takes ``pg_advisory_xact_lock`` on every ``(table, scope, client_id)`` it touches, in one fixed
order (by lock id, so calls never deadlock), then reads ``clock_timestamp()``, prunes the keys'
rows that left the window, decides and inserts. Calls on one key are thus totally ordered and
stamped by the database's clock alone: replicas with skewed clocks agree and no window of
``window_seconds`` ever admits more than ``limit`` (an exact sliding log). A lock is held for the
statement's time in the server only, never across client round trips.

The log is the table ``<prefix>ratelimit`` (one row per entry, indexed by
``(scope, client_id, at)``, which serves the prune's range ``DELETE`` and the oldest-first walk).
A key's live cost is kept in ``<prefix>ratelimit_sums`` (``scope, client_id, used``), so a call
never sums the key's rows: it costs an index probe or two plus the rows it expires, and only a
denial walks the oldest rows (just enough of them for ``retry_after``). The sums are maintained
by statement-level triggers on the log (``AFTER INSERT / UPDATE / DELETE ... REFERENCING``
transition tables, ``AFTER TRUNCATE``): whatever writes the log, in whatever version, the sum
follows in the same statement and transaction, under the key's advisory lock that every writer
holds. A key's sums row goes when its sum reaches 0 (an idle client leaves no sums row).

Upgrades. The lock ids (``hashtextextended('<table>:<scope>:<client_id>', 0)``) and the log table
are those of earlier releases (``_v1`` functions, and before them the same steps as several
statements in one transaction). The functions' names carry a version (``_v2``, created beside
any older ones, which are left alone): a replica calls its own release's functions, and all take
the same locks, so replicas of every release exclude each other on a key. Older replicas read
the log (they sum the rows), and since the triggers maintain the sums for their writes too, the
sums stay exact during a rolling upgrade: a mixed set of replicas never admits more than the
limit. The first v2 replica to open creates the triggers and fills the sums from the rows, in one
transaction holding a lock on the log that excludes every writer (a short pause for all
replicas, once); later opens find the triggers and change nothing.

The functions commit with ``synchronous_commit = off`` (for their own transaction only): the
key's lock is then not held while the WAL is flushed to disk (about a millisecond per call,
which capped one client's calls). The log is soft state: a crash of the database server (not a
clean restart) may lose the last fraction of a second of entries, which are then admitted again
(the sums are lost with them: they commit in the same transactions).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Unpack

from psycopg import sql

from ..errors import RateLimitStorageError
from ..persistence.owner import Owner
from ..persistence.postgres import Conn, PoolOptions, PostgresTable, open_pool
from ..persistence.prefix import DEFAULT_TABLE_PREFIX, check_table_prefix
from .base import Charge, Decision, Limit, RateLimiter, verdict

#: The version in the functions' names (``<table>_admit_v2``, ``<table>_record_v2``).
VERSION: Final = "v2"

_DDL = (
    'CREATE TABLE IF NOT EXISTS {t} (scope text COLLATE "C" NOT NULL,'
    ' client_id text COLLATE "C" NOT NULL, at timestamptz NOT NULL, cost bigint NOT NULL);'
    " CREATE INDEX IF NOT EXISTS {i} ON {t} (scope, client_id, at);"
    ' CREATE TABLE IF NOT EXISTS {s} (scope text COLLATE "C" NOT NULL,'
    ' client_id text COLLATE "C" NOT NULL, used bigint NOT NULL, PRIMARY KEY (scope, client_id))'
)
# The lock id is PostgreSQL's hash of a text key: replicas of every release must keep using it.
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"

# The triggers keeping {s} equal to the per-key sums of {t}: (name, event, transition tables).
_TRIGGERS: Final = (
    ("sums_on_insert", "INSERT", "REFERENCING NEW TABLE AS added"),
    ("sums_on_update", "UPDATE", "REFERENCING OLD TABLE AS removed NEW TABLE AS added"),
    ("sums_on_delete", "DELETE", "REFERENCING OLD TABLE AS removed"),
    ("sums_on_truncate", "TRUNCATE", ""),
)
_TRIGGERS_PRESENT = (
    "SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = ANY(%s)"
)

# One function for every trigger (TG_OP says which; PL/pgSQL plans only the branch it runs).
# Removed cost is subtracted first; a sums row that reaches 0 is deleted.
_SUMS = """
CREATE OR REPLACE FUNCTION {f}() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    DELETE FROM {s};
    RETURN NULL;
  END IF;
  IF TG_OP IN ('DELETE', 'UPDATE') THEN
    WITH g AS (SELECT scope, client_id, sum(cost) AS freed FROM removed GROUP BY 1, 2),
      emptied AS (DELETE FROM {s} AS s USING g
        WHERE s.scope = g.scope AND s.client_id = g.client_id AND s.used <= g.freed)
    UPDATE {s} AS s SET used = s.used - g.freed FROM g
      WHERE s.scope = g.scope AND s.client_id = g.client_id AND s.used > g.freed;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO {s} AS s (scope, client_id, used)
      SELECT scope, client_id, sum(cost) FROM added GROUP BY 1, 2 HAVING sum(cost) <> 0
      ON CONFLICT (scope, client_id) DO UPDATE SET used = s.used + excluded.used;
  END IF;
  RETURN NULL;
END $fn$
"""
_TRIGGER = "CREATE TRIGGER {n} AFTER {e} ON {t} {r} FOR EACH STATEMENT EXECUTE FUNCTION {f}()"
_REBUILD = (
    "DELETE FROM {s}; INSERT INTO {s} (scope, client_id, used)"
    " SELECT scope, client_id, sum(cost) FROM {t} GROUP BY 1, 2 HAVING sum(cost) <> 0"
)

# admit: (o_allowed, o_index, o_used, o_ages, o_costs). o_index (1-based) is the limit that
# decided; o_used its live cost; on a denial that can fit one day, o_ages/o_costs are its oldest
# entries, just enough of them to free the cost the call needs (see base.verdict).
_ADMIT = """
CREATE OR REPLACE FUNCTION {f}(p_client text, p_scopes text[], p_limits bigint[],
    p_costs bigint[], p_windows float8[], OUT o_allowed boolean, OUT o_index int,
    OUT o_used bigint, OUT o_ages float8[], OUT o_costs bigint[])
LANGUAGE plpgsql AS $fn$
DECLARE
  v_key bigint;
  v_now timestamptz;
  v_need bigint;
  v_freed bigint;
  v_row record;
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  FOR v_key IN SELECT DISTINCT hashtextextended({lock} || s || ':' || p_client, 0)
      FROM unnest(p_scopes) AS s ORDER BY 1 LOOP
    PERFORM pg_advisory_xact_lock(v_key);
  END LOOP;
  v_now := clock_timestamp();
  FOR k IN 1 .. cardinality(p_scopes) LOOP
    o_index := k;
    DELETE FROM {t} WHERE scope = p_scopes[k] AND client_id = p_client
      AND at <= v_now - make_interval(secs => p_windows[k]);
    o_used := coalesce((SELECT used FROM {s} WHERE scope = p_scopes[k] AND client_id = p_client),
      0);
    v_need := o_used + greatest(p_costs[k], 1) - p_limits[k];
    IF v_need > 0 THEN
      o_allowed := false;
      IF greatest(p_costs[k], 1) <= p_limits[k] THEN
        o_ages := '{{}}';
        o_costs := '{{}}';
        v_freed := 0;
        FOR v_row IN SELECT at, cost FROM {t}
            WHERE scope = p_scopes[k] AND client_id = p_client ORDER BY at LOOP
          o_ages := o_ages || extract(epoch FROM v_now - v_row.at)::float8;
          o_costs := o_costs || v_row.cost;
          v_freed := v_freed + v_row.cost;
          EXIT WHEN v_freed >= v_need;
        END LOOP;
      END IF;
      RETURN;
    END IF;
  END LOOP;
  INSERT INTO {t} (scope, client_id, at, cost)
    SELECT p_scopes[g.n], p_client, v_now, p_costs[g.n]
    FROM generate_subscripts(p_scopes, 1) AS g(n) WHERE p_costs[g.n] > 0;
  o_allowed := true;
END $fn$
"""

_RECORD = """
CREATE OR REPLACE FUNCTION {f}(p_clients text[], p_scopes text[], p_costs bigint[],
    p_windows float8[]) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
  v_key bigint;
  v_now timestamptz;
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  FOR v_key IN SELECT DISTINCT hashtextextended({lock} || k.s || ':' || k.c, 0)
      FROM unnest(p_scopes, p_clients) AS k(s, c) ORDER BY 1 LOOP
    PERFORM pg_advisory_xact_lock(v_key);
  END LOOP;
  v_now := clock_timestamp();
  DELETE FROM {t} AS r USING (SELECT s, c, min(w) AS w
      FROM unnest(p_scopes, p_clients, p_windows) AS k(s, c, w) GROUP BY s, c) AS k
    WHERE r.scope = k.s AND r.client_id = k.c AND r.at <= v_now - make_interval(secs => k.w);
  INSERT INTO {t} (scope, client_id, at, cost)
    SELECT k.s, k.c, v_now, k.n FROM unnest(p_scopes, p_clients, p_costs) AS k(s, c, n);
END $fn$
"""

_CALL_ADMIT = "SELECT * FROM {f}(%s, %s::text[], %s::int8[], %s::int8[], %s::float8[])"
_CALL_RECORD = "SELECT {f}(%s::text[], %s::text[], %s::int8[], %s::float8[])"


class PostgresRateLimiter(PostgresTable[RateLimitStorageError], RateLimiter):
    """Sliding logs in the table ``<prefix>ratelimit``; open it with :meth:`open`."""

    @classmethod
    async def open(
        cls, url: str, *, prefix: str = DEFAULT_TABLE_PREFIX, **pool: Unpack[PoolOptions]
    ) -> PostgresRateLimiter:
        """Connect to ``url``, create the tables, index, functions and triggers if missing (the
        sums filled from the log the first time, see the module docs), open a pool.

        ``pool`` sizes the pool and bounds connecting and waiting (:class:`PoolOptions`).
        Errors are :class:`RateLimitStorageError`s that never quote the URL's user name or password.
        """
        table = f"{check_table_prefix(prefix)}ratelimit"
        names = {
            "t": sql.Identifier(table),
            "s": sql.Identifier(f"{table}_sums"),
            "lock": sql.Literal(f"{table}:"),
        }
        sums = sql.Identifier(f"{table}_sums_apply")
        ddl = [
            sql.SQL(_DDL).format(i=sql.Identifier(f"{table}_key"), **names),
            sql.SQL(_ADMIT).format(f=sql.Identifier(f"{table}_admit_{VERSION}"), **names),
            sql.SQL(_RECORD).format(f=sql.Identifier(f"{table}_record_{VERSION}"), **names),
        ]
        triggers = [
            sql.SQL("LOCK TABLE {t} IN SHARE ROW EXCLUSIVE MODE").format(**names),
            sql.SQL(_SUMS).format(f=sums, **names),
            *(
                sql.SQL("DROP TRIGGER IF EXISTS {n} ON {t}").format(n=sql.Identifier(n), **names)
                for n, _, _ in _TRIGGERS
            ),
            *(
                sql.SQL(_TRIGGER).format(
                    n=sql.Identifier(n), e=sql.SQL(e), r=sql.SQL(r), f=sums, **names
                )
                for n, e, r in _TRIGGERS
            ),
            sql.SQL(_REBUILD).format(**names),
        ]

        async def setup(conn: Conn) -> None:
            async with conn.transaction():
                await conn.execute(_LOCK, (f"ddl:{table}",))  # IF NOT EXISTS alone races
                for statement in ddl:
                    await conn.execute(statement)
                cur = await conn.execute(_TRIGGERS_PRESENT, (table, [n for n, _, _ in _TRIGGERS]))
                row = await cur.fetchone()
                if row is None or row[0] < len(_TRIGGERS):
                    for statement in triggers:  # the log locked first: no writer runs meanwhile
                        await conn.execute(statement)

        owner = Owner(RateLimitStorageError, "rate limiter", f"kubebots-{table}")
        return cls(await open_pool(url, owner, setup=setup, **pool), table)

    def _call(self, query: str, kind: str) -> sql.Composed:
        return sql.SQL(query).format(f=sql.Identifier(f"{self._table}_{kind}_{VERSION}"))

    async def _admit(self, client_id: str, limits: tuple[Limit, ...]) -> Decision:
        params = (
            client_id,
            [limit.scope for limit in limits],
            [limit.limit for limit in limits],
            [limit.cost for limit in limits],
            [float(limit.window_seconds) for limit in limits],
        )
        async with self._pool.connection() as conn:
            cur = await conn.execute(self._call(_CALL_ADMIT, "admit"), params)
            row = await cur.fetchone()
        if row is None:
            raise RateLimitStorageError("PostgreSQL returned no rate limit decision")
        allowed, index, used, ages, costs = row
        decision = verdict(int(used), _entries(ages, costs), limits[index - 1])
        if decision.allowed != allowed:
            raise RateLimitStorageError("PostgreSQL's rate limit decision disagrees with the rule")
        return decision

    async def _record_many(self, charges: tuple[Charge, ...]) -> None:
        params = (
            [charge.client_id for charge in charges],
            [charge.scope for charge in charges],
            [charge.cost for charge in charges],
            [float(charge.window_seconds) for charge in charges],
        )
        async with self._pool.connection() as conn:
            await conn.execute(self._call(_CALL_RECORD, "record"), params)


def _entries(ages: list[float] | None, costs: list[int] | None) -> Iterable[tuple[float, int]]:
    return zip(ages or (), (int(c) for c in costs or ()), strict=True)
