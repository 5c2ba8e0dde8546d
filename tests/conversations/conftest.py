"""Fixtures for the storage contract: one ``store`` per backend, PostgreSQL is real (no skips).

PostgreSQL tests use a table of their own per session (dropped at the end) and random ids, so
they never meet rows of other test runs sharing the database.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from kubebots.runtime.conversations import (
    ConversationStore,
    DeferredConversationStore,
    MemoryConversationStore,
    PostgresConversationStore,
    SqliteConversationStore,
)

from .util import StoreFactory

ALL_BACKENDS = [
    "memory",
    "sqlite",
    "deferred",
    pytest.param("postgres", marks=pytest.mark.postgres),
]
DURABLE_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def pg_table(postgres_url: str) -> Iterator[str]:
    """A fresh table name for this session; fails (never skips) when PostgreSQL is down."""
    name = f"kb_test_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP TABLE IF EXISTS {}").format(psycopg.sql.Identifier(name))
        )


def _factory(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    db_path = tmp_path / "conversations.db"

    async def open_store() -> ConversationStore:
        if backend == "memory":
            return await MemoryConversationStore.open()
        if backend == "sqlite":
            return await SqliteConversationStore.open(db_path)
        if backend == "deferred":  # what a bot built during an outage holds, once opened
            return DeferredConversationStore(lambda: SqliteConversationStore.open(db_path))
        url: str = request.getfixturevalue("postgres_url")
        table: str = request.getfixturevalue("pg_table")
        return await PostgresConversationStore.open(url, table=table, pool_size=4)

    return open_store


@pytest.fixture(params=ALL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[ConversationStore]:
    """One open store of every backend in turn."""
    opened = await _factory(backend, tmp_path, request)()
    yield opened
    await opened.close()


@pytest.fixture(params=DURABLE_BACKENDS)
async def open_durable(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """Opens any number of stores on the same SQLite file / PostgreSQL table."""
    opened: list[ConversationStore] = []
    make = _factory(str(request.param), tmp_path, request)

    async def open_one() -> ConversationStore:
        opened.append(await make())
        return opened[-1]

    yield open_one
    for each in opened:
        await each.close()
