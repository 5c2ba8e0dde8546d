"""A :class:`~kubebots.runtime.ratelimit.base.RateLimiter` shared by replicas through PostgreSQL.

Each call is one statement (one round trip): a PL/pgSQL function, created with the table, that
takes ``pg_advisory_xact_lock`` on every ``(table, scope, client_id)`` it touches, in one fixed
order (by lock id, so calls never deadlock), then reads ``clock_timestamp()``, prunes the keys'
rows that left the window, decides and inserts. Calls on one key are thus totally ordered and
stamped by the database's clock alone: replicas with skewed clocks agree and no window of
``window_seconds`` ever admits more than ``limit`` (an exact sliding log). A lock is held for the
statement's time in the server only, never across client round trips.

The functions commit with ``synchronous_commit = off`` (for their own transaction only): the
key's lock is then not held while the WAL is flushed to disk (about a millisecond per call,
which capped one client's calls). The log is soft state: a crash of the database server (not a
clean restart) may lose the last fraction of a second of entries, which are then admitted again.

The lock ids (``hashtextextended('<table>:<scope>:<client_id>', 0)``) and the table are those of
earlier releases, which ran the same steps as several statements in one transaction: replicas
of both kinds share a database safely. The functions' names carry a version (``_v1``): a release
that changes them adds new ones beside the old.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Unpack

from psycopg import sql

from ..errors import RateLimitStorageError
from ..persistence.owner import Owner
from ..persistence.postgres import Conn, PoolOptions, PostgresTable, open_pool
from ..persistence.prefix import DEFAULT_TABLE_PREFIX, check_table_prefix
from .base import Charge, Decision, Limit, RateLimiter, verdict

_DDL = (
    'CREATE TABLE IF NOT EXISTS {t} (scope text COLLATE "C" NOT NULL,'
    ' client_id text COLLATE "C" NOT NULL, at timestamptz NOT NULL, cost bigint NOT NULL);'
    " CREATE INDEX IF NOT EXISTS {i} ON {t} (scope, client_id, at)"
)
# The lock id is PostgreSQL's hash of a text key: replicas of every release must keep using it.
_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"

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
    SELECT coalesce(sum(cost), 0) INTO o_used FROM {t}
      WHERE scope = p_scopes[k] AND client_id = p_client;
    v_need := o_used + greatest(p_costs[k], 1) - p_limits[k];
    IF v_need > 0 THEN
      o_allowed := false;
      IF greatest(p_costs[k], 1) <= p_limits[k] THEN
        SELECT array_agg(extract(epoch FROM v_now - q.at)::float8 ORDER BY q.at, q.run),
               array_agg(q.cost ORDER BY q.at, q.run)
          INTO o_ages, o_costs
          FROM (SELECT at, cost, sum(cost) OVER (ORDER BY at ROWS UNBOUNDED PRECEDING) AS run
                FROM {t} WHERE scope = p_scopes[k] AND client_id = p_client) AS q
          WHERE q.run - q.cost < v_need;
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
  DELETE FROM {t} AS r USING unnest(p_scopes, p_clients, p_windows) AS k(s, c, w)
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
        """Connect to ``url``, create the table, its index and functions if missing, open a pool.

        ``pool`` sizes the pool and bounds connecting and waiting (:class:`PoolOptions`).
        Errors are :class:`RateLimitStorageError`s that never quote the URL's user name or password.
        """
        table = f"{check_table_prefix(prefix)}ratelimit"
        names = {
            "t": sql.Identifier(table),
            "lock": sql.Literal(f"{table}:"),
        }
        ddl = [
            sql.SQL(_DDL).format(t=names["t"], i=sql.Identifier(f"{table}_key")),
            sql.SQL(_ADMIT).format(f=sql.Identifier(f"{table}_admit_v1"), **names),
            sql.SQL(_RECORD).format(f=sql.Identifier(f"{table}_record_v1"), **names),
        ]

        async def setup(conn: Conn) -> None:
            async with conn.transaction():
                await conn.execute(_LOCK, (f"ddl:{table}",))  # IF NOT EXISTS alone races
                for statement in ddl:
                    await conn.execute(statement)

        owner = Owner(RateLimitStorageError, "rate limiter", f"kubebots-{table}")
        return cls(await open_pool(url, owner, setup=setup, **pool), table)

    def _call(self, query: str, kind: str) -> sql.Composed:
        return sql.SQL(query).format(f=sql.Identifier(f"{self._table}_{kind}_v1"))

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
