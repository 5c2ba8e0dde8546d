"""Replica reports on every backend: round trip, replacement, expiry by heartbeat age."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from kubebots.runtime.configstore.base import BotReport, ReplicaReport, ReplicaReports

from .util import StoreFactory

LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)  # a report's own heartbeat_at is ignored


async def test_reports_round_trip(store: ReplicaReports) -> None:
    bots = (
        BotReport("zeta", 3, 17, error="provider refused the model", error_revision=18),
        BotReport("alpha", None, None, error="invalid config", error_revision=5),
        BotReport("mid", 1, 2),
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
    ],
)
async def test_invalid_reports_are_rejected(store: ReplicaReports, report: ReplicaReport) -> None:
    with pytest.raises(ValueError):
        await store.report(report)
    assert await store.replica_reports(max_age_seconds=3600) == []
