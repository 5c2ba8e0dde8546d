"""Fixtures: one ``limiter`` per backend; PostgreSQL is real and never skipped.

PostgreSQL tests use a table prefix of their own per session (the table is dropped at the end)
and random client ids, so they never meet rows of other test runs sharing the database.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from psycopg import sql

from kubebots.runtime.ratelimit import MemoryRateLimiter, PostgresRateLimiter, RateLimiter


def drop_tables(url: str, prefix: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        table = sql.Identifier(f"{prefix}ratelimit")
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))


@pytest.fixture(scope="session")
def pg_prefix(postgres_url: str) -> Iterator[str]:
    """A fresh table prefix for this session; fails (never skips) when PostgreSQL is down."""
    prefix = f"kb_test_{uuid.uuid4().hex[:10]}_"
    yield prefix
    drop_tables(postgres_url, prefix)


@pytest.fixture
def client_id() -> str:
    """A client id no other test (or test run) uses."""
    return f"client-{uuid.uuid4().hex}"


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.postgres)])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    """One open limiter of every backend in turn (real clocks)."""
    opened: RateLimiter
    if request.param == "memory":
        opened = await MemoryRateLimiter.open()
    else:
        url: str = request.getfixturevalue("postgres_url")
        prefix: str = request.getfixturevalue("pg_prefix")
        opened = await PostgresRateLimiter.open(url, prefix=prefix, pool_size=3)
    yield opened
    await opened.close()
