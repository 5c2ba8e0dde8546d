"""PostgreSQL specifics: replicas share one limit, the database clock rules, errors keep secrets."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from kubebots.runtime.errors import StorageError
from kubebots.runtime.ratelimit import Charge, Limit, PostgresRateLimiter

from .conftest import drop_tables

pytestmark = pytest.mark.postgres


@pytest.fixture
async def replicas(postgres_url: str, pg_prefix: str) -> AsyncIterator[list[PostgresRateLimiter]]:
    """Three limiters with a pool each: three replicas sharing the database."""
    opened = [
        await PostgresRateLimiter.open(postgres_url, prefix=pg_prefix, pool_size=5)
        for _ in range(3)
    ]
    yield opened
    for limiter in opened:
        await limiter.close()


async def test_replicas_never_admit_more_than_the_limit(
    replicas: list[PostgresRateLimiter], client_id: str
) -> None:
    calls = [replicas[i % 3].acquire(client_id, limit=60, window_seconds=60.0) for i in range(300)]
    decisions = await asyncio.gather(*calls)
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 60
    assert sorted(d.remaining for d in allowed) == list(range(60))
    denied = [d for d in decisions if not d.allowed]
    assert all(d.retry_after is not None and 0 < d.retry_after <= 60.0 for d in denied)
    # A fourth replica opened later sees the same log.
    assert not (await replicas[0].acquire(client_id, limit=60)).allowed


async def test_replicas_share_token_budgets(
    replicas: list[PostgresRateLimiter], client_id: str
) -> None:
    await asyncio.gather(*(r.record(client_id, cost=40) for r in replicas))
    for replica in replicas:
        check = await replica.acquire(client_id, limit=120, cost=0, scope="tokens")
        assert not check.allowed and check.remaining == 0
        assert (await replica.acquire(client_id, limit=121, cost=0, scope="tokens")).allowed


async def test_expired_rows_are_pruned_and_stamped_by_the_database(
    postgres_url: str, pg_prefix: str, replicas: list[PostgresRateLimiter], client_id: str
) -> None:
    table = sql.Identifier(f"{pg_prefix}ratelimit")
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        insert = "INSERT INTO {} VALUES ('requests', %s, now() - interval '2 hours', 5)"
        await conn.execute(sql.SQL(insert).format(table), (client_id,))
        assert (await replicas[0].acquire(client_id, limit=1)).allowed
        query = "SELECT at, now() - at FROM {} WHERE client_id = %s"
        rows = await (await conn.execute(sql.SQL(query).format(table), (client_id,))).fetchall()
    assert len(rows) == 1  # the old row went, the new one is stamped with the database clock
    assert rows[0][1].total_seconds() < 5


async def test_concurrent_opens_create_the_table_once(postgres_url: str) -> None:
    prefix = f"kb_test_{uuid.uuid4().hex[:10]}_"
    try:
        opened = await asyncio.gather(
            *(PostgresRateLimiter.open(postgres_url, prefix=prefix, pool_size=1) for _ in range(4))
        )
        assert (await opened[0].acquire("c", limit=1)).allowed
        assert not (await opened[3].acquire("c", limit=1)).allowed
        for limiter in opened:
            await limiter.close()
    finally:
        drop_tables(postgres_url, prefix)


async def test_connection_errors_hold_no_credentials() -> None:
    url = "postgresql://someuser:hunter2secret@127.0.0.1:1/test"
    with pytest.raises(StorageError) as info:
        await PostgresRateLimiter.open(url, connect_timeout=2)
    shown = f"{info.value} {info.value.__cause__} {info.value.detail}"
    assert "hunter2secret" not in shown and "someuser" not in shown


async def test_malformed_url() -> None:
    with pytest.raises(StorageError, match="malformed"):
        await PostgresRateLimiter.open(
            "postgresql://u:pw@host:notaport/db password=x y", connect_timeout=2
        )


def test_bad_prefix_is_rejected(postgres_url: str) -> None:
    for prefix in ("Bad-", "x" * 60, 'a"; DROP TABLE x; --'):
        with pytest.raises(ValueError):
            asyncio.run(PostgresRateLimiter.open(postgres_url, prefix=prefix))


async def test_calls_take_the_lock_ids_of_earlier_releases(
    postgres_url: str, pg_prefix: str, replicas: list[PostgresRateLimiter], client_id: str
) -> None:
    """An earlier release's replica locks ``hashtextextended('<table>:<scope>:<client>', 0)``
    for its several statements: a call waits for it, so both kinds may share a database."""
    key = f"{pg_prefix}ratelimit:requests:{client_id}"
    lock = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as old:
        async with old.transaction():
            await old.execute(lock, (key,))
            admit = asyncio.create_task(
                replicas[0].admit(client_id, [Limit("tokens", 5, cost=0), Limit("requests", 1)])
            )
            await asyncio.sleep(0.3)
            assert not admit.done()
        assert (await admit).allowed
        async with old.transaction():
            await old.execute(lock, (key,))
            charge = asyncio.create_task(
                replicas[1].record_many([Charge(client_id, "requests", 1)])
            )
            await asyncio.sleep(0.3)
            assert not charge.done()
        await charge
    assert not (await replicas[2].acquire(client_id, limit=2)).allowed


async def test_charges_of_many_keys_in_any_order_never_deadlock(
    replicas: list[PostgresRateLimiter], client_id: str
) -> None:
    clients = [f"{client_id}-{i}" for i in range(4)]
    batches = [
        [Charge(c, scope, 1) for c in (clients if n % 2 else clients[::-1]) for scope in "ab"]
        for n in range(30)
    ]
    admits = [
        replicas[n % 3].admit(clients[n % 4], [Limit("b", 10**6), Limit("a", 10**6)])
        for n in range(30)
    ]
    await asyncio.gather(
        *(replicas[n % 3].record_many(batch) for n, batch in enumerate(batches)), *admits
    )
    for c in clients:
        check = await replicas[0].admit(c, [Limit("a", 10**6, cost=0), Limit("b", 10**6, cost=0)])
        assert check.remaining == 10**6 - 30 - 30 // 4 - (1 if clients.index(c) < 30 % 4 else 0)


async def _sums(conn: psycopg.AsyncConnection, prefix: str, client_id: str) -> dict[str, int]:
    """The sums rows of ``client_id`` by scope, after checking each equals its rows' sum."""
    table = f"{prefix}ratelimit"
    query = sql.SQL(
        "SELECT scope, used, (SELECT sum(cost) FROM {t} AS r"
        " WHERE r.scope = s.scope AND r.client_id = s.client_id) FROM {s} AS s"
        " WHERE client_id = %s"
    ).format(t=sql.Identifier(table), s=sql.Identifier(f"{table}_sums"))
    rows = await (await conn.execute(query, (client_id,))).fetchall()
    assert all(used == total for _, used, total in rows)
    rows_query = sql.SQL("SELECT DISTINCT scope FROM {} WHERE client_id = %s AND cost > 0")
    scopes = await conn.execute(rows_query.format(sql.Identifier(table)), (client_id,))
    assert {scope for (scope,) in await scopes.fetchall()} == {scope for scope, _, _ in rows}
    return {scope: used for scope, used, _ in rows}


async def test_writes_of_older_releases_are_counted(
    postgres_url: str, pg_prefix: str, replicas: list[PostgresRateLimiter], client_id: str
) -> None:
    """A replica of an earlier release (the ``_v1`` functions, or the several statements before
    them) inserts and prunes rows under the same lock without knowing the sums: the triggers
    keep them exact, so a rolling upgrade never admits more than the limit."""
    table = sql.Identifier(f"{pg_prefix}ratelimit")
    key = f"{pg_prefix}ratelimit:requests:{client_id}"
    lock = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"
    insert = sql.SQL("INSERT INTO {} VALUES ('requests', %s, clock_timestamp() - %s, %s)")
    prune = sql.SQL("DELETE FROM {} WHERE scope = 'requests' AND client_id = %s AND at <= %s")
    hour = timedelta(hours=1)
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as old:
        await replicas[0].record_many([Charge(client_id, "requests", 10)])
        async with old.transaction():  # an old replica's admission: two rows, one long expired
            await old.execute(lock, (key,))
            await old.execute(insert.format(table), (client_id, timedelta(0), 7))
            await old.execute(insert.format(table), (client_id, 2 * hour, 100))
        assert await _sums(old, pg_prefix, client_id) == {"requests": 117}
        decision = await replicas[1].acquire(client_id, limit=18)  # prunes the expired row
        assert (decision.allowed, decision.remaining) == (True, 0)
        assert await _sums(old, pg_prefix, client_id) == {"requests": 18}
        assert not (await replicas[2].acquire(client_id, limit=18)).allowed
        async with old.transaction():  # an old replica prunes rows the new ones wrote
            await old.execute(lock, (key,))
            await old.execute(insert.format(table), (client_id, hour, 1000))
            await old.execute(prune.format(table), (client_id, datetime.now(UTC) - 0.5 * hour))
        assert await _sums(old, pg_prefix, client_id) == {"requests": 18}
        async with old.transaction():
            await old.execute(lock, (key,))
            await old.execute(prune.format(table), (client_id, datetime.now(UTC) + hour))
        assert await _sums(old, pg_prefix, client_id) == {}  # an emptied key has no sums row
        decision = await replicas[0].acquire(client_id, limit=2)
        assert (decision.allowed, decision.remaining) == (True, 1)
        assert await _sums(old, pg_prefix, client_id) == {"requests": 1}


async def test_the_first_open_fills_the_sums_from_the_rows(postgres_url: str) -> None:
    """A log written by an earlier release (no sums table, no triggers): the first open of this
    release sums each key's rows once, later opens change nothing."""
    prefix = f"kb_test_{uuid.uuid4().hex[:10]}_"
    table = sql.Identifier(f"{prefix}ratelimit")
    create = (
        'CREATE TABLE {} (scope text COLLATE "C" NOT NULL, client_id text COLLATE "C" NOT NULL,'
        " at timestamptz NOT NULL, cost bigint NOT NULL)"
    )
    rows = "INSERT INTO {} VALUES ('requests', 'a', now(), 3), ('requests', 'a', now(), 4),"
    rows += " ('tokens', 'a', now(), 50), ('requests', 'b', now() - interval '2 hours', 9)"
    try:
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
            await conn.execute(sql.SQL(create).format(table))
            await conn.execute(sql.SQL(rows).format(table))
            first = await PostgresRateLimiter.open(postgres_url, prefix=prefix, pool_size=1)
            assert await _sums(conn, prefix, "a") == {"requests": 7, "tokens": 50}
            assert await _sums(conn, prefix, "b") == {"requests": 9}
            second = await PostgresRateLimiter.open(postgres_url, prefix=prefix, pool_size=1)
            assert not (await second.acquire("a", limit=7)).allowed
            assert (await first.acquire("a", limit=8)).allowed
            assert (await second.acquire("b", limit=1)).allowed  # the expired row went
            assert await _sums(conn, prefix, "a") == {"requests": 8, "tokens": 50}
            assert await _sums(conn, prefix, "b") == {"requests": 1}
            await first.close()
            await second.close()
    finally:
        drop_tables(postgres_url, prefix)


async def test_a_denial_walks_only_the_oldest_rows(
    replicas: list[PostgresRateLimiter], client_id: str
) -> None:
    """Many live rows: retry_after comes from the oldest ones, as the rule says."""
    await replicas[0].record_many([Charge(client_id, "tokens", 1)] * 5000)
    await asyncio.sleep(0.5)
    await replicas[0].record_many([Charge(client_id, "tokens", 1)] * 5000)
    budget = Limit("tokens", 10_000, cost=0, window_seconds=60.0)
    denied = await replicas[1].admit(client_id, [budget])
    assert not denied.allowed and denied.retry_after is not None
    assert 58.0 < denied.retry_after < 59.7  # the first batch's age freed the one it needs
    wide = await replicas[2].admit(client_id, [Limit("tokens", 5001, window_seconds=60.0)])
    assert wide.retry_after is not None and wide.retry_after < 59.7
    deep = await replicas[2].admit(client_id, [Limit("tokens", 5000, cost=0, window_seconds=60.0)])
    assert deep.retry_after is not None  # it needs a row of the second batch, 0.5 s younger
    assert deep.retry_after > wide.retry_after + 0.4
