"""Config propagation: ``put`` in the store -> the new config served by a store-driven manager.

The writer and the runtime use separate store instances (separate connections; for SQLite two
connections to one file, as two processes would), in one process so one clock times both ends.
Each update is timed from just before ``put`` to the moment the manager's bot carries the new
revision: the manager is looked at every 0.2 ms, as a chat arriving then would find it.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from kubebots.runtime import BotManager, DynaBot
from kubebots.runtime.configstore import ConfigStore, PostgresConfigStore, SqliteConfigStore
from kubebots.runtime.sync import StoreConfigLoader, StoreSync, SyncSettings

from .backends import POSTGRES_URL
from .stats import median, percentile

UPDATES = 200
GOAL_P99_MS = 100.0
BOT = "bench:propagation"


@dataclass(frozen=True)
class Propagation:
    p50_ms: float
    p99_ms: float
    max_ms: float
    samples_ms: tuple[float, ...] = ()

    @property
    def ok(self) -> bool:
        return self.p99_ms < GOAL_P99_MS


def _served(bot: DynaBot | None) -> int:
    return bot.version.revision if bot is not None and bot.version is not None else 0


async def _measure(writer: ConfigStore, reader: ConfigStore) -> Propagation:
    await writer.put(BOT, {"systemPrompt": "v0"}, generation=1, uid="bench")
    manager = BotManager(config_loader=StoreConfigLoader(reader), env={})
    sync = StoreSync(reader, manager, SyncSettings(replica_id="bench"))
    samples: list[float] = []
    async with manager, sync:
        await sync.ready.wait()
        await manager.get_or_create(BOT)
        for n in range(1, UPDATES + 1):
            started = time.perf_counter()
            revision = await writer.put(
                BOT, {"systemPrompt": f"v{n}"}, generation=n + 1, uid="bench"
            )
            async with asyncio.timeout(10):
                # Polling is the measurement: what a chat arriving at that moment would find.
                while _served(await manager.get(BOT)) < revision:  # noqa: ASYNC110
                    await asyncio.sleep(0.0002)
            samples.append((time.perf_counter() - started) * 1000)
    return Propagation(median(samples), percentile(samples, 99), max(samples), tuple(samples))


async def sqlite_propagation() -> Propagation:
    with tempfile.TemporaryDirectory(prefix="kubebots-bench-") as tmp:
        path = str(Path(tmp) / "store.db")
        writer = await SqliteConfigStore.open(path)
        reader = await SqliteConfigStore.open(path)
        try:
            return await _measure(writer, reader)
        finally:
            await writer.close()
            await reader.close()


async def postgres_propagation() -> Propagation:
    prefix = f"bench{secrets.token_hex(4)}_"
    writer = await PostgresConfigStore.open(POSTGRES_URL, prefix=prefix)
    reader = await PostgresConfigStore.open(POSTGRES_URL, prefix=prefix)
    try:
        return await _measure(writer, reader)
    finally:
        await writer.close()
        await reader.close()
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT tablename FROM pg_tables WHERE tablename LIKE %s", (prefix + "%",)
            )
            for (table,) in await cur.fetchall():
                await conn.execute(f'DROP TABLE IF EXISTS "{table}"')


PROPAGATIONS = {"sqlite": sqlite_propagation, "postgres": postgres_propagation}


def run(name: str) -> Propagation:
    return asyncio.run(PROPAGATIONS[name]())
