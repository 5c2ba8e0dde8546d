"""Fixtures for the config store contract: every backend, PostgreSQL real (never skipped).

PostgreSQL tests get tables of their own: a random prefix per session, extended per test
(``kbst_<random>_<n>_``), so every test starts from revision 0 and never meets rows of another
test or test run sharing the database. Every table of the session is dropped at the end.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from kubebots.runtime.configstore.base import ReportingConfigStore
from kubebots.runtime.configstore.memory import MemoryConfigStore
from kubebots.runtime.configstore.postgres import PostgresConfigStore
from kubebots.runtime.configstore.sqlite import SqliteConfigStore

from .util import StoreFactory

ALL_BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@dataclass
class PgPrefixes:
    """Hands out per-test table prefixes under one random session prefix."""

    session: str
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def new(self) -> str:
        return f"{self.session}{next(self.numbers)}_"


@pytest.fixture(scope="session")
def pg_prefixes(postgres_url: str) -> Iterator[PgPrefixes]:
    """Connects first, so a PostgreSQL that is down fails (never skips) the test."""
    session = f"kbst_{uuid.uuid4().hex[:8]}_"
    with psycopg.connect(postgres_url, autocommit=True):
        pass
    yield PgPrefixes(session)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            " AND starts_with(tablename, %s)",
            (session,),
        ).fetchall()
        for (table,) in rows:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


@pytest.fixture
def pg_prefix(pg_prefixes: PgPrefixes) -> str:
    """Table prefix of this test's PostgreSQL tables (fresh: revisions start at 0)."""
    return pg_prefixes.new()


@pytest.fixture
def watch_app_name() -> str:
    """The ``application_name`` of this test's PostgreSQL watch connections."""
    return f"kbst-watch-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=ALL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def open_store(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[StoreFactory]:
    """Opens store instances on one location: the same SQLite file, the same PostgreSQL tables
    (as separate processes would); for memory, the one shared instance."""
    opened: list[ReportingConfigStore] = []
    memory = MemoryConfigStore()

    async def open_one() -> ReportingConfigStore:
        store: ReportingConfigStore
        if backend == "memory":
            store = memory
        elif backend == "sqlite":
            store = await SqliteConfigStore.open(tmp_path / "store.db", poll_interval=0.02)
        else:
            store = await PostgresConfigStore.open(
                request.getfixturevalue("postgres_url"),
                prefix=request.getfixturevalue("pg_prefix"),
                pool_size=3,
                connect_timeout=30,
                watch_application_name=request.getfixturevalue("watch_app_name"),
            )
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_store: StoreFactory) -> ReportingConfigStore:
    """One open store of every backend in turn."""
    return await open_store()
