"""Replica reports carry a bot's rollout counters on every backend: they round-trip, bad
counters are refused, and a ``replica_bots`` table made before the ``rollout`` column gets it."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from kubebots.runtime.configstore import postgres_schema, schema, sqlite_schema
from kubebots.runtime.configstore.base import BotReport, ReplicaReport, ReplicaReports
from kubebots.runtime.configstore.counters import BUCKETS, GenerationCounters
from kubebots.runtime.configstore.postgres import PostgresConfigStore
from kubebots.runtime.configstore.sqlite import SqliteConfigStore
from kubebots.runtime.persistence.times import to_micros, utc_now

LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def latency(*counts: tuple[int, int]) -> tuple[int, ...]:
    """Latency buckets with ``(bucket, count)`` set, the others 0."""
    buckets = [0] * BUCKETS
    for index, count in counts:
        buckets[index] = count
    return tuple(buckets)


STABLE = GenerationCounters(4, "1.0", False, 30, 2, 2800, 1, latency((5, 20), (9, 8)))
CANDIDATE = GenerationCounters(5, "1.0", False, 12, 1, 1500, 0, latency((6, 11)))
MIRRORED = GenerationCounters(5, "1.0", True, 3, 0, 200, 3, latency((BUCKETS - 1, 3)))
COUNTED = BotReport("ns:canary", 4, 17, rollout=(STABLE, CANDIDATE, MIRRORED))


async def test_counters_round_trip(store: ReplicaReports) -> None:
    bots = (
        COUNTED,
        BotReport("ns:plain", 1, 2),
        # a lazy stable bot: nothing loaded, its counts still reported
        BotReport("ns:lazy", None, None, rollout=(GenerationCounters(1, "2.3"),)),
        BotReport("ns:both", 2, 9, "boom", 10, tools=(("files", 1),), rollout=(CANDIDATE,)),
    )
    await store.report(ReplicaReport("replica-a", 17, LONG_AGO, bots))
    (report,) = await store.replica_reports(max_age_seconds=60)
    assert report.bots == tuple(sorted(bots, key=lambda b: b.bot_id))
    got = {b.bot_id: b for b in report.bots}["ns:canary"].rollout
    assert [c.p95_ms for c in got] == [c.p95_ms for c in COUNTED.rollout]

    # the next report replaces the counts (cumulative per window on a replica: never added)
    later = BotReport("ns:canary", 4, 17, rollout=(STABLE.plus(STABLE),))
    await store.report(ReplicaReport("replica-a", 18, LONG_AGO, (later,)))
    (report,) = await store.replica_reports(max_age_seconds=60)
    assert report.bots == (later,)
    assert report.bots[0].rollout[0].turns == 60


BAD_COUNTERS = [
    pytest.param([STABLE], id="not-a-tuple"),
    pytest.param(((4, "1.0"),), id="not-counters"),
    pytest.param((STABLE, STABLE), id="a-key-twice"),
    pytest.param((GenerationCounters(4, "1.0", turns=-1),), id="negative"),
    pytest.param((GenerationCounters(4, "1.0", turns=True),), id="bool"),
    pytest.param((GenerationCounters(4, "1.0", turns=1, errors=2),), id="more-errors-than-turns"),
    pytest.param((GenerationCounters(4, "1.0", latency=(0, 1)),), id="other-buckets"),
    pytest.param((GenerationCounters(4, ""),), id="no-window"),
    pytest.param((GenerationCounters(4, "w" * 65),), id="long-window"),
]


@pytest.mark.parametrize("counters", BAD_COUNTERS)
async def test_bad_counters_are_refused(store: ReplicaReports, counters: object) -> None:
    bad = BotReport("ns:canary", 4, 17, rollout=counters)  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError), match="count"):
        await store.report(ReplicaReport("r", 1, LONG_AGO, (BotReport("ns:ok", 1, 1), bad)))
    assert await store.replica_reports(max_age_seconds=3600) == []


# -- a table of the release before the rollout column ----------------------------------------

BEFORE_ROLLOUT = tuple(s.replace(" rollout {text},", "") for s in schema.SCHEMA)
OLD_ROW = (
    "INSERT INTO {replica_bots} (replica_id, bot_id, generation, revision, error,"
    " error_revision, served_by, reason, tools) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
OLD_BOT = BotReport("ns:a", 1, 2, "boom", 3, None, "ToolUnavailable", (("files", 0),))


def test_the_old_schema_is_the_new_one_without_the_rollout_column() -> None:
    assert schema.REPLICA_BOT_COLUMNS[-1] == "rollout"
    assert BEFORE_ROLLOUT != schema.SCHEMA and len(BEFORE_ROLLOUT) == len(schema.SCHEMA)
    assert "rollout" not in BEFORE_ROLLOUT[-1] and "tools" in BEFORE_ROLLOUT[-1]


async def _upgraded_round_trip(store: ReplicaReports) -> None:
    """The row written before the upgrade reads back without counts; a new report keeps them."""
    reports = await store.replica_reports(max_age_seconds=3600)
    assert [r.bots for r in reports if r.replica_id == "old"] == [(OLD_BOT,)]
    await store.report(ReplicaReport("new", 3, LONG_AGO, (COUNTED,)))
    reports = await store.replica_reports(max_age_seconds=3600)
    assert [(r.replica_id, r.bots) for r in reports] == [("new", (COUNTED,)), ("old", (OLD_BOT,))]


async def test_sqlite_adds_the_rollout_column_to_an_older_table(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    bind = sqlite_schema.Statements("kubebots_")
    with sqlite3.connect(path) as conn:  # what the older release made and wrote
        for statement in BEFORE_ROLLOUT:
            conn.execute(bind(statement))
        conn.execute(bind(sqlite_schema.HEARTBEAT), ("old", 3, to_micros(utc_now())))
        conn.execute(
            bind(OLD_ROW), ("old", "ns:a", 1, 2, "boom", 3, None, "ToolUnavailable", '{"files":0}')
        )
    conn.close()
    for _ in range(2):  # a second open finds the column and adds nothing
        store = await SqliteConfigStore.open(path)
        try:
            await _upgraded_round_trip(store)
        finally:
            await store.close()
    with sqlite3.connect(path) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(kubebots_replica_bots)")]
        (stored,) = conn.execute(
            "SELECT rollout FROM kubebots_replica_bots WHERE replica_id = 'new'"
        ).fetchone()
    conn.close()
    assert columns.count("rollout") == 1 and columns[-1] == "rollout"
    assert stored.startswith('[[4,"1.0",false,30,2,2800,1,[')  # compact JSON text


@pytest.mark.postgres
async def test_postgres_adds_the_rollout_column_to_an_older_table(
    postgres_url: str, pg_prefix: str
) -> None:
    bind = postgres_schema.Statements(pg_prefix)
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        for statement in BEFORE_ROLLOUT:
            await conn.execute(bind(statement))
        await conn.execute(bind(postgres_schema.HEARTBEAT), ("old", 3))
        await conn.execute(
            bind(OLD_ROW), ("old", "ns:a", 1, 2, "boom", 3, None, "ToolUnavailable", '{"files":0}')
        )
    for _ in range(2):  # a second open finds the column and adds nothing
        store = await PostgresConfigStore.open(postgres_url, prefix=pg_prefix, pool_size=1)
        try:
            await _upgraded_round_trip(store)
        finally:
            await store.close()
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_name = %s AND column_name = 'rollout'",
            (pg_prefix + "replica_bots",),
        )
        assert await cur.fetchall() == [("text",)]
