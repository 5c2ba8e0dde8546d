"""Fixtures: one ``limiter`` per backend; PostgreSQL and Redis are real and never skipped.

PostgreSQL tests use a table prefix of their own per session (the table and its functions are
dropped at the end), Redis tests a key prefix of their own (their keys are deleted at the end;
the shared server is never flushed), and every test random client ids, so they never meet the
data of other test runs sharing the servers.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
import redis
from psycopg import sql

from kubebots.runtime.ratelimit import (
    MemoryRateLimiter,
    PostgresRateLimiter,
    RateLimiter,
    RedisRateLimiter,
)

#: The real Redis every redis test talks to (never flushed: tests use key prefixes of their own).
REDIS_URL = "redis://127.0.0.1:6379/0"


def drop_tables(url: str, prefix: str) -> None:
    table = f"{prefix}ratelimit"
    with psycopg.connect(url, autocommit=True) as conn:
        for name in (table, f"{table}_sums"):  # the log's triggers go with it
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
        for function in ("admit_v1", "record_v1", "admit_v2", "record_v2", "sums_apply"):
            name = sql.Identifier(f"{table}_{function}")
            conn.execute(sql.SQL("DROP FUNCTION IF EXISTS {}").format(name))


def delete_keys(url: str, prefix: str) -> None:
    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])


@pytest.fixture(scope="session")
def pg_prefix(postgres_url: str) -> Iterator[str]:
    """A fresh table prefix for this session; fails (never skips) when PostgreSQL is down."""
    prefix = f"kb_test_{uuid.uuid4().hex[:10]}_"
    yield prefix
    drop_tables(postgres_url, prefix)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture(scope="session")
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A fresh key prefix for this session; its keys are deleted at the end."""
    prefix = f"kbtest-{uuid.uuid4().hex[:10]}:"
    yield prefix
    delete_keys(redis_url, prefix)


@pytest.fixture
def client_id() -> str:
    """A client id no other test (or test run) uses."""
    return f"client-{uuid.uuid4().hex}"


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres), "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    """One open limiter of every backend in turn (real clocks)."""
    opened: RateLimiter
    if request.param == "memory":
        opened = await MemoryRateLimiter.open()
    elif request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        prefix: str = request.getfixturevalue("pg_prefix")
        opened = await PostgresRateLimiter.open(url, prefix=prefix, pool_size=3)
    else:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        opened = await RedisRateLimiter.open(url, prefix=prefix, max_connections=4)
    yield opened
    await opened.close()
