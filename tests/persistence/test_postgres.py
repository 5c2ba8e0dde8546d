"""The PostgreSQL kernel: lock ids, errors without credentials, tables made once, pools."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg import sql

from kubebots.runtime.errors import StorageError
from kubebots.runtime.persistence.owner import Owner
from kubebots.runtime.persistence.postgres import (
    Conn,
    Pool,
    connect_options,
    create_missing_tables,
    lock_id,
    open_pool,
    postgres_error,
)
from kubebots.runtime.persistence.redaction import url_secrets

SECRET_USER = "kb_secret_user_3e9d"
SECRET_PASSWORD = "kb-secret-pw-77a1"


class OwnerError(StorageError):
    """The error class of some table owner."""


OWNER = Owner(OwnerError, "test store", "kubebots-test")


def test_lock_ids_never_change() -> None:
    """Replicas of different releases share a database: these values are a contract."""
    assert lock_id("kubebots_messages") == -4977552317585418446
    assert lock_id("kubebots_messages", "default:bot", "client", "c1") == 2231216421415352743
    assert lock_id("kubebots_", "config-store") == 5078884250015554032


def test_lock_ids_keep_the_parts_apart() -> None:
    assert lock_id("a", "bc") != lock_id("ab", "c")
    assert lock_id("a:b") != lock_id("a", "b")
    assert -(2**63) <= lock_id("x") < 2**63


def test_connect_options_use_whole_seconds_of_at_least_one() -> None:
    assert connect_options(10.4) == {"autocommit": True, "connect_timeout": 10}
    assert connect_options(0.1)["connect_timeout"] == 1


@pytest.mark.postgres
async def test_errors_keep_the_sqlstate_and_drop_credentials(postgres_url: str) -> None:
    """The server quotes what it got back (here a table named like the password)."""
    password = "kb_secret_pw_5c0e"
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as caught:
            await conn.execute(f"SELECT * FROM missing_{password}")
    secrets = url_secrets(f"postgresql://{SECRET_USER}:{password}@h/db")
    error = postgres_error(OwnerError, "conversation store", caught.value, secrets)
    assert isinstance(error, OwnerError)
    assert error.message == (
        'PostgreSQL conversation store failed [42P01]: relation "missing_***" does not exist'
    )


def test_a_malformed_url_gets_a_fixed_text() -> None:
    url = f"postgresql://{SECRET_USER}:{SECRET_PASSWORD}@h/db password=x y"
    with pytest.raises(psycopg.Error) as caught:
        psycopg.conninfo.conninfo_to_dict(url)
    error = postgres_error(OwnerError, "connection", caught.value, url_secrets(url))
    assert error.message == "PostgreSQL connection failed: the connection URL is malformed"


@pytest.mark.postgres
@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://{SECRET_USER}:{SECRET_PASSWORD}@127.0.0.1:1/test",  # nothing listens
        f"postgresql://{SECRET_USER}:{SECRET_PASSWORD}@127.0.0.1:5432/test",  # no such role
        f"host=127.0.0.1 port=5432 user={SECRET_USER} password={SECRET_PASSWORD} dbname=test",
    ],
)
async def test_open_pool_fails_with_the_owner_error_and_no_credentials(url: str) -> None:
    async def setup(conn: Conn) -> None:
        raise AssertionError("never reached")

    with pytest.raises(OwnerError) as caught:
        await open_pool(url, OWNER, pool_size=1, connect_timeout=5, setup=setup)
    shown = f"{caught.value} {caught.value!r} {caught.value.detail}"
    assert caught.value.message.startswith("PostgreSQL connection failed")
    assert SECRET_USER not in shown and SECRET_PASSWORD not in shown
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.fixture
async def table(postgres_url: str) -> AsyncIterator[str]:
    name = f"kb_kernel_{uuid.uuid4().hex[:12]}"
    yield name
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.mark.postgres
async def test_a_pool_runs_setup_once_and_maps_query_errors(postgres_url: str, table: str) -> None:
    ddl = sql.SQL("CREATE TABLE {} (n integer PRIMARY KEY)").format(sql.Identifier(table))

    async def setup(conn: Conn) -> None:
        await create_missing_tables(conn, lock_id(table), [table], [ddl])

    async def open_one() -> Pool[OwnerError]:
        return await open_pool(postgres_url, OWNER, pool_size=2, connect_timeout=10, setup=setup)

    # Racing openers all succeed: the lock lets one create, the others find the table.
    pools = await asyncio.gather(*(open_one() for _ in range(4)))
    pool = pools[0]
    insert = sql.SQL("INSERT INTO {} VALUES (1)").format(sql.Identifier(table))
    async with pool.transaction() as conn:
        await conn.execute(insert)
    with pytest.raises(OwnerError, match=r"PostgreSQL test store failed \[23505\]"):
        async with pool.connection() as conn:
            await conn.execute(insert)
    for each in pools:
        await each.close()
        await each.close()
    with pytest.raises(OwnerError, match="the test store is closed"):
        async with pool.connection():
            pass


@pytest.mark.postgres
async def test_existing_tables_are_left_alone(postgres_url: str, table: str) -> None:
    """All tables there: the DDL never runs (a role with only DML rights can open them)."""
    ident = sql.Identifier(table)
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE TABLE {} (n integer)").format(ident))
        failing = sql.SQL("CREATE TABLE {} (n integer)").format(ident)  # would fail if run
        await create_missing_tables(conn, lock_id(table), [table], [failing])
        with pytest.raises(psycopg.errors.DuplicateTable):
            await create_missing_tables(conn, lock_id(table), [table, table + "_x"], [failing])


async def _backend_pids(pool: Pool[OwnerError], n: int) -> set[int]:
    """The server pids of the ``n`` connections the pool holds (all checked out at once)."""
    pids: set[int] = set()
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(n):
            conn = await stack.enter_async_context(pool.connection())
            pids.add(conn.info.backend_pid)
    return pids


async def _terminate(postgres_url: str, pids: set[int]) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (list(pids),)
        )
        for _ in range(100):  # until the backends are gone
            cur = await admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (list(pids),)
            )
            if (await cur.fetchone() or (1,))[0] == 0:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the backends outlived pg_terminate_backend")


async def _select_one(pool: Pool[OwnerError]) -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT 1")).fetchone()
    return int(row[0]) if row else 0


async def _noop(conn: Conn) -> None:
    return None


@pytest.mark.postgres
async def test_a_busy_pool_skips_the_check_and_discards_a_broken_connection(
    postgres_url: str,
) -> None:
    """A connection back from work is handed out again unchecked (no extra round trip); one
    that broke meanwhile fails its call, is discarded, and the pool's others are checked, so
    the next call works."""
    pool = await open_pool(postgres_url, OWNER, pool_size=2, connect_timeout=5, setup=_noop)
    try:
        pids = await _backend_pids(pool, 2)
        await _terminate(postgres_url, pids)
        with pytest.raises(OwnerError, match="PostgreSQL test store failed"):
            await _select_one(pool)  # used unchecked: it had just been returned
        assert pool.problem is None  # the server answers: a broken connection, not an outage
        assert await _select_one(pool) == 1  # the other one is checked, then replaced
        assert await _select_one(pool) == 1
    finally:
        await pool.close()


@pytest.mark.postgres
async def test_a_connection_idle_past_the_threshold_is_checked(postgres_url: str) -> None:
    pool = await open_pool(
        postgres_url, OWNER, pool_size=2, connect_timeout=5, setup=_noop, idle_check=0.0
    )
    try:
        pids = await _backend_pids(pool, 2)
        await _terminate(postgres_url, pids)
        assert await _select_one(pool) == 1  # both found broken by the check: a new one serves
        async with pool.connection() as conn:
            assert conn.info.backend_pid not in pids
    finally:
        await pool.close()
