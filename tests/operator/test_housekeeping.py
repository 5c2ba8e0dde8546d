"""The config store's housekeeping: compaction and replica expiry on a schedule, on real stores.

The loop's sleep is a fake (it records the delays and checks the store between periods); the
stores are real: memory (with its injectable clock for the retention windows), SQLite and
PostgreSQL (tables of their own, dropped at the end).
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
from psycopg import sql

from kubebots.operator.housekeeping import Housekeeping, HousekeepingTiming
from kubebots.operator.services import housekeeping_timing
from kubebots.operator.settings import OperatorSettings
from kubebots.runtime.configstore import (
    MemoryConfigStore,
    ReplicaReport,
    ReportingConfigStore,
    ResyncRequired,
    StoreError,
)
from kubebots.runtime.configstore.postgres import PostgresConfigStore
from kubebots.runtime.configstore.sqlite import SqliteConfigStore

BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
CONFIG: dict[str, Any] = {"llm": {"provider": "echo"}}
# Windows short enough that the rows written at the start are past them after a short pause.
SHORT = HousekeepingTiming(compact_interval=600, history_retention=0.01, replica_expiry=0.01)


class Stop(Exception):
    """Ends a housekeeping loop from its fake sleep."""


class Periods:
    """A fake sleep: records each delay, runs ``check(n)`` before waking from the n-th (1-based)
    sleep, and stops the loop instead of sleeping the ``stop_at``-th time."""

    def __init__(self, stop_at: int, check: Callable[[int], Awaitable[None]] | None = None):
        self.delays: list[float] = []
        self._stop_at = stop_at
        self._check = check

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self._check is not None:
            await self._check(len(self.delays))
        if len(self.delays) == self._stop_at:
            raise Stop


class Flaky:
    """The store, refusing its first ``failures`` compactions and replica expiries."""

    def __init__(self, store: ReportingConfigStore, failures: int) -> None:
        self._store = store
        self.left = {"compact": failures, "expire": failures}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def _refuse(self, what: str) -> None:
        if self.left[what] > 0:
            self.left[what] -= 1
            raise StoreError(f"{what} refused: the database is down")

    async def compact(self, retention_seconds: float) -> int:
        self._refuse("compact")
        return await self._store.compact(retention_seconds)

    async def expire_replicas(self, *, max_age_seconds: float) -> int:
        self._refuse("expire")
        return await self._store.expire_replicas(max_age_seconds=max_age_seconds)


@pytest.fixture(params=BACKENDS)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ReportingConfigStore]:
    opened: ReportingConfigStore
    if request.param == "memory":
        opened = MemoryConfigStore()
    elif request.param == "sqlite":
        opened = await SqliteConfigStore.open(tmp_path / "store.db", poll_interval=0.02)
    else:
        url: str = request.getfixturevalue("postgres_url")
        prefix = f"kbhk_{uuid.uuid4().hex[:8]}_"
        opened = await PostgresConfigStore.open(url, prefix=prefix, pool_size=2)
    yield opened
    await opened.close()
    if request.param == "postgres":
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                " AND starts_with(tablename, %s)",
                (prefix,),
            ).fetchall()
            for (table,) in rows:
                conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))


async def history_from_zero(store: ReportingConfigStore) -> int:
    """The compacted revision a watch from revision 0 meets (0: the whole history is there)."""
    try:
        await anext(aiter(store.watch(0)))
    except ResyncRequired as exc:
        return exc.compacted_revision
    return 0


async def seed(store: ReportingConfigStore) -> None:
    """Three revisions (the last a tombstone) and one replica report, then a short pause so
    they are older than :data:`SHORT`'s windows."""
    await store.put("a", CONFIG, generation=1, uid="u-a")
    await store.put("b", CONFIG, generation=1, uid="u-b")
    await store.delete("a")
    await store.report(ReplicaReport("gone", 3, datetime.now(UTC)))
    await asyncio.sleep(0.05)


async def test_compaction_and_expiry_run_every_period(store: ReportingConfigStore) -> None:
    await seed(store)
    seen: list[tuple[int, int, int]] = []

    async def check(n: int) -> None:
        reports = await store.replica_reports(max_age_seconds=3600)
        seen.append((n, await history_from_zero(store), len(reports)))

    periods = Periods(stop_at=3, check=check)
    housekeeping = Housekeeping(store, SHORT, sleep=periods, rng=random.Random(7))
    with pytest.raises(Stop):
        await housekeeping.run()
    # Nothing before the first period; then history up to the tombstone is gone, and so is the
    # silent replica.
    assert seen == [(1, 0, 1), (2, 3, 0), (3, 3, 0)]
    assert (housekeeping.passes, housekeeping.failures, housekeeping.expired) == (2, 0, 1)
    assert housekeeping.compacted_revision == 3
    assert all(480 <= d <= 720 for d in periods.delays)
    assert len(set(periods.delays)) == 3  # jittered
    # The live entry is still listed; a watcher that was behind lists again from here.
    entries, revision = await store.list()
    assert ([e.bot_id for e in entries], revision) == (["b"], 3)


async def test_the_windows_keep_younger_history_and_replicas() -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    store = MemoryConfigStore(clock=lambda: now[0])
    await store.put("old", CONFIG, generation=1, uid="u-old")
    await store.report(ReplicaReport("old-replica", 1, now[0]))
    now[0] += timedelta(minutes=30)
    await store.put("young", CONFIG, generation=1, uid="u-young")
    await store.report(ReplicaReport("young-replica", 2, now[0]))
    now[0] += timedelta(minutes=31)  # "old" is 61 minutes old, "young" 31
    settings = OperatorSettings(history_retention=3600, replica_expiry=3600)
    housekeeping = Housekeeping(store, housekeeping_timing(settings))
    assert await housekeeping.step()
    assert await history_from_zero(store) == 1
    assert [e.revision async for e in _take(store, 1, 1)] == [2]
    reports = await store.replica_reports(max_age_seconds=86400)
    assert [r.replica_id for r in reports] == ["young-replica"]
    await store.close()


async def _take(store: ReportingConfigStore, from_revision: int, count: int) -> AsyncIterator[Any]:
    watch = store.watch(from_revision)
    for _ in range(count):
        yield await asyncio.wait_for(anext(aiter(watch)), 10)


async def test_a_refusing_store_is_logged_once_and_tried_again_next_period(
    store: ReportingConfigStore, caplog: pytest.LogCaptureFixture
) -> None:
    await seed(store)
    flaky = Flaky(store, failures=2)
    periods = Periods(stop_at=4)
    housekeeping = Housekeeping(cast(ReportingConfigStore, flaky), SHORT, sleep=periods)
    with (
        caplog.at_level(logging.INFO, logger="kubebots.operator.housekeeping"),
        pytest.raises(Stop),
    ):
        await housekeeping.run()
    assert (housekeeping.passes, housekeeping.failures) == (3, 2)
    assert flaky.left == {"compact": 0, "expire": 0}
    assert await history_from_zero(store) == 3
    assert await store.replica_reports(max_age_seconds=3600) == []
    messages = [r.getMessage() for r in caplog.records]
    assert sum("housekeeping failed" in m for m in messages) == 1
    assert "compact refused" in messages[0] and "expire refused" in messages[0]
    assert any("works again" in m for m in messages)


def test_settings_defaults() -> None:
    timing = housekeeping_timing(OperatorSettings())
    assert timing == HousekeepingTiming(
        compact_interval=600, history_retention=3600, replica_expiry=3600
    )
