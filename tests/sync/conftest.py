from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kubebots.runtime import BotManager
from kubebots.runtime.configstore import (
    ConfigStore,
    MemoryConfigStore,
    PostgresConfigStore,
    SqliteConfigStore,
)
from kubebots.runtime.sync import StoreConfigLoader, StoreSync, SyncSettings


def drop_prefix(url: str, prefix: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename LIKE %s",
            (prefix.replace("_", r"\_") + "%",),
        ).fetchall()
        for (table,) in rows:
            conn.execute(f'DROP TABLE IF EXISTS "{table}" CASCADE')


@pytest.fixture
async def pg_store_factory(postgres_url: str) -> AsyncIterator[Callable[..., Any]]:
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    opened: list[ConfigStore] = []

    async def make(**kwargs: Any) -> PostgresConfigStore:
        store = await PostgresConfigStore.open(postgres_url, prefix=prefix, **kwargs)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()
    drop_prefix(postgres_url, prefix)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, pg_store_factory: Callable[..., Any]
) -> AsyncIterator[ConfigStore]:
    if request.param == "memory":
        s: ConfigStore = MemoryConfigStore()
    elif request.param == "sqlite":
        s = await SqliteConfigStore.open(str(tmp_path / "store.db"))
    else:
        s = await pg_store_factory()
    yield s
    await s.close()


def make_runtime(
    store: ConfigStore, *, preload: bool = False, replica: str = "r1", **manager_kwargs: Any
) -> tuple[BotManager, StoreSync]:
    manager = BotManager(config_loader=StoreConfigLoader(store), env={}, **manager_kwargs)
    sync = StoreSync(
        store,
        manager,
        SyncSettings(replica_id=replica, preload=preload, heartbeat_interval=0.5),
    )
    return manager, sync
