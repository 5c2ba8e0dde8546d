"""Replica reports on every backend: round trip, replacement, expiry by heartbeat age; a
``replica_bots`` table of an older release gets its new columns."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from kubebots.runtime.configstore import postgres_schema, schema, sqlite_schema
from kubebots.runtime.configstore.base import BotReport, ReplicaReport, ReplicaReports
from kubebots.runtime.configstore.postgres import PostgresConfigStore
from kubebots.runtime.configstore.sqlite import SqliteConfigStore
from kubebots.runtime.persistence.times import to_micros, utc_now

from .util import StoreFactory

LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)  # a report's own heartbeat_at is ignored


async def test_reports_round_trip(store: ReplicaReports) -> None:
    bots = (
        BotReport("zeta", 3, 17, error="provider refused the model", error_revision=18),
        BotReport("alpha", None, None, error="invalid config", error_revision=5),
        BotReport("mid", 1, 2),
        BotReport("fell", 2, 9, served_by="small-model@backup.example:8000"),
        BotReport(
            "tooled",
            4,
            11,
            error="tool source 'mcp:files' is unavailable: connection refused",
            error_revision=12,
            reason="ToolUnavailable",
            tools=(("files", 2), ("search", 0), ("wiki-ü", 17)),
        ),
        BotReport("counted", 1, 3, tools=(("files", 1),)),
    )
    before = datetime.now(UTC) - timedelta(minutes=5)
    await store.report(ReplicaReport("replica-b", 18, LONG_AGO, bots))
    await store.report(ReplicaReport("replica-a", 0, LONG_AGO))

    reports = await store.replica_reports(max_age_seconds=60)
    assert [r.replica_id for r in reports] == ["replica-a", "replica-b"]
    a, b = reports
    assert (a.synced_revision, a.bots) == (0, ())
    assert b.synced_revision == 18
    assert b.bots == tuple(sorted(bots, key=lambda bot: bot.bot_id))
    for report in reports:
        assert report.heartbeat_at.utcoffset() == timedelta(0)
        assert before < report.heartbeat_at < datetime.now(UTC) + timedelta(minutes=5)


async def test_a_report_replaces_the_previous_one(open_store: StoreFactory) -> None:
    store, other = await open_store(), await open_store()
    await store.report(
        ReplicaReport("r", 1, LONG_AGO, (BotReport("a", 1, 1), BotReport("b", 1, 1)))
    )
    first = (await other.replica_reports(max_age_seconds=60))[0].heartbeat_at
    await asyncio.sleep(0.01)
    await other.report(ReplicaReport("r", 9, LONG_AGO, (BotReport("c", 2, 9),)))
    (report,) = await store.replica_reports(max_age_seconds=60)
    assert (report.replica_id, report.synced_revision) == ("r", 9)
    assert report.bots == (BotReport("c", 2, 9),)
    assert report.heartbeat_at > first
    await store.report(ReplicaReport("r", 10, LONG_AGO))
    assert (await other.replica_reports(max_age_seconds=60))[0].bots == ()


async def test_stale_replicas_are_hidden_then_expired(store: ReplicaReports) -> None:
    await store.report(ReplicaReport("stale", 1, LONG_AGO, (BotReport("a", 1, 1),)))
    await asyncio.sleep(1.0)
    await store.report(ReplicaReport("fresh", 1, LONG_AGO, (BotReport("a", 1, 1),)))

    # "stale" is at least 1 s old; "fresh" is younger than 0.8 s unless the machine stalls.
    assert [r.replica_id for r in await store.replica_reports(max_age_seconds=0.8)] == ["fresh"]
    assert len(await store.replica_reports(max_age_seconds=3600)) == 2
    assert await store.expire_replicas(max_age_seconds=3600) == 0
    assert await store.expire_replicas(max_age_seconds=0.8) == 1
    assert await store.expire_replicas(max_age_seconds=0.8) == 0
    (left,) = await store.replica_reports(max_age_seconds=3600)
    assert left.replica_id == "fresh" and left.bots == (BotReport("a", 1, 1),)

    # An expired replica that reports again is back, without its old bot reports.
    await store.report(ReplicaReport("stale", 2, LONG_AGO))
    reports = await store.replica_reports(max_age_seconds=3600)
    assert [(r.replica_id, r.bots) for r in reports] == [
        ("fresh", (BotReport("a", 1, 1),)),
        ("stale", ()),
    ]


@pytest.mark.parametrize(
    "report",
    [
        ReplicaReport("", 0, LONG_AGO),
        ReplicaReport("r", -1, LONG_AGO),
        ReplicaReport("r", 0, LONG_AGO, (BotReport("a", 1, 1), BotReport("a", 2, 2))),
        ReplicaReport("r", 0, LONG_AGO, (BotReport("bad id", 1, 1),)),
        ReplicaReport("r", 0, LONG_AGO, (BotReport("a", 1, -3),)),
        ReplicaReport("r", 0, LONG_AGO, (BotReport("a", 1, 1, error="nul\x00"),)),
        ReplicaReport("r", 0, LONG_AGO, (BotReport("a", 1, 1, served_by=""),)),
        ReplicaReport("r", 0, LONG_AGO, (BotReport("a", 1, 1, served_by="m@h\x00"),)),
        ReplicaReport("r", 0, LONG_AGO, (BotReport("a", 1, 1, "e", 2, reason=""),)),
        ReplicaReport("r", 0, LONG_AGO, (BotReport("a", 1, 1, tools=(("b", 1), ("a", 1))),)),
        ReplicaReport("r", 0, LONG_AGO, (BotReport("a", 1, 1, tools=(("a", 1), ("a", 2))),)),
        ReplicaReport("r", 0, LONG_AGO, (BotReport("a", 1, 1, tools=(("a", -1),)),)),
        ReplicaReport("r", 0, LONG_AGO, (BotReport("a", 1, 1, tools=(("", 1),)),)),
    ],
)
async def test_invalid_reports_are_rejected(store: ReplicaReports, report: ReplicaReport) -> None:
    with pytest.raises(ValueError):
        await store.report(report)
    assert await store.replica_reports(max_age_seconds=3600) == []


#: The tables as two older releases made them: before ``served_by``, and before ``reason`` and
#: ``tools``.
NEW_COLUMNS = " served_by {text}, reason {text}, tools {text}, rollout {text},"
OLD_SCHEMAS = {
    "before-served-by": tuple(s.replace(NEW_COLUMNS, "") for s in schema.SCHEMA),
    "before-tools": tuple(s.replace(NEW_COLUMNS, " served_by {text},") for s in schema.SCHEMA),
}
OLD_ROW = (
    "INSERT INTO {replica_bots} (replica_id, bot_id, generation, revision, error,"
    " error_revision) VALUES (%s, %s, %s, %s, %s, %s)"
)
OLD_REPORT = ReplicaReport("old", 3, LONG_AGO, (BotReport("a", 1, 2, "boom", 3),))
NEW_REPORT = ReplicaReport(
    "new",
    3,
    LONG_AGO,
    (
        BotReport(
            "a", 1, 2, "unlisted", 3, "m@backup", "ToolUnavailable", (("docs", 0), ("files", 2))
        ),
    ),
)


async def _upgraded_round_trip(store: ReplicaReports) -> None:
    """The report written on the old table is read back as it was; a new one keeps served_by,
    reason and tools."""
    reports = await store.replica_reports(max_age_seconds=3600)
    assert [r.bots for r in reports if r.replica_id == "old"] == [OLD_REPORT.bots]
    await store.report(NEW_REPORT)
    reports = await store.replica_reports(max_age_seconds=3600)
    assert [r.bots for r in reports] == [NEW_REPORT.bots, OLD_REPORT.bots]


def test_the_old_schemas_are_the_new_one_without_the_new_columns() -> None:
    assert schema.REPLICA_BOT_COLUMNS == ("served_by", "reason", "tools", "rollout")
    for old in OLD_SCHEMAS.values():
        assert old != schema.SCHEMA and len(old) == len(schema.SCHEMA)
    assert OLD_SCHEMAS["before-served-by"] != OLD_SCHEMAS["before-tools"]


@pytest.mark.parametrize("release", sorted(OLD_SCHEMAS))
async def test_sqlite_adds_the_new_columns_to_an_older_table(tmp_path: Path, release: str) -> None:
    path = tmp_path / "store.db"
    bind = sqlite_schema.Statements("kubebots_")
    with sqlite3.connect(path) as conn:  # what the older release made and wrote
        for statement in OLD_SCHEMAS[release]:
            conn.execute(bind(statement))
        conn.execute(bind(sqlite_schema.HEARTBEAT), ("old", 3, to_micros(utc_now())))
        conn.execute(bind(OLD_ROW), ("old", "a", 1, 2, "boom", 3))
    conn.close()
    for _ in range(2):  # a second open finds the columns and adds nothing
        store = await SqliteConfigStore.open(path)
        try:
            await _upgraded_round_trip(store)
        finally:
            await store.close()
    with sqlite3.connect(path) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(kubebots_replica_bots)")]
        stored = conn.execute(
            "SELECT reason, tools FROM kubebots_replica_bots ORDER BY replica_id"
        ).fetchall()
    conn.close()
    # the tool counts are compact JSON text
    assert stored == [("ToolUnavailable", '{"docs":0,"files":2}'), (None, None)]
    assert columns[-4:] == ["served_by", "reason", "tools", "rollout"]
    assert all(columns.count(c) == 1 for c in schema.REPLICA_BOT_COLUMNS)


@pytest.mark.postgres
@pytest.mark.parametrize("release", sorted(OLD_SCHEMAS))
async def test_postgres_adds_the_new_columns_to_an_older_table(
    postgres_url: str, pg_prefix: str, release: str
) -> None:
    bind = postgres_schema.Statements(pg_prefix)
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        for statement in OLD_SCHEMAS[release]:
            await conn.execute(bind(statement))
        await conn.execute(bind(postgres_schema.HEARTBEAT), ("old", 3))
        await conn.execute(bind(OLD_ROW), ("old", "a", 1, 2, "boom", 3))
    for _ in range(2):  # a second open finds the columns and adds nothing
        store = await PostgresConfigStore.open(postgres_url, prefix=pg_prefix, pool_size=1)
        try:
            await _upgraded_round_trip(store)
        finally:
            await store.close()
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = %s AND column_name = ANY(%s) ORDER BY ordinal_position",
            (pg_prefix + "replica_bots", list(schema.REPLICA_BOT_COLUMNS)),
        )
        assert await cur.fetchall() == [(c, "text") for c in schema.REPLICA_BOT_COLUMNS]
