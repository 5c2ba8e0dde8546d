"""A Bot's status from what was written and what the replicas report: the conditions and their
reasons, who serves what, the shared report cache and the handler's short wait."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from kubebots.operator.reconcile import Applied, BotRef
from kubebots.operator.status import (
    ReportsCache,
    comparable,
    differs,
    status_patch,
    wait_served,
)
from kubebots.runtime.configstore import BotReport, MemoryConfigStore, ReplicaReport
from kubebots.runtime.configstore.serving import Serving, serving_from

from .support import SPEC

BOT = BotRef("ns", "a", "uid-a", 4, SPEC)


def report(replica: str, synced: int, *problems: BotReport) -> ReplicaReport:
    return ReplicaReport(replica, synced, datetime.now(UTC), problems)


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """type -> (status, reason)"""
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


# -- who serves a revision ------------------------------------------------------------------


def test_a_replica_serves_a_revision_once_synced_unless_it_reports_an_error() -> None:
    reports = [
        report("r1", 10),
        report("r2", 9),
        report("r3", 12, BotReport("ns:a", None, None, "no such key", 11)),
        report("r4", 12, BotReport("ns:a", None, None, "an older failure", 8)),
        report("r5", 12, BotReport("ns:b", None, None, "another bot", 12)),
    ]
    assert serving_from(reports, "ns:a", 10) == Serving(
        replicas=5, served=3, errors=("replica r3: no such key",)
    )
    assert serving_from([], "ns:a", 1) == Serving(replicas=0, served=0)


def test_fallbacks_serving_a_bot_are_counted_per_endpoint() -> None:
    reports = [
        report("r1", 10, BotReport("ns:a", 1, 10, served_by="small@backup:8000")),
        report("r2", 10, BotReport("ns:a", 1, 10, served_by="small@backup:8000")),
        report("r3", 10, BotReport("ns:a", 1, 10, "boom", 10, served_by="tiny@other")),
        report("r4", 10, BotReport("ns:b", 1, 10, served_by="elsewhere@x")),
        report("r5", 10),
    ]
    assert serving_from(reports, "ns:a", 10) == Serving(
        replicas=5,
        served=4,
        errors=("replica r3: boom",),
        fallbacks=(("small@backup:8000", 2), ("tiny@other", 1)),
    )
    assert serving_from(reports, "ns:c", 10).fallbacks == ()


# -- the status to patch --------------------------------------------------------------------


def test_served_by_every_live_replica_is_ready() -> None:
    status = status_patch(BOT, Applied(revision=7), Serving(2, 2), None)
    assert conditions(status) == {
        "Accepted": ("True", "Valid"),
        "Synced": ("True", "Stored"),
        "Ready": ("True", "Serving"),
        "Stalled": ("False", "NotStalled"),
        "Reconciling": ("False", "Done"),
    }
    assert status["observedGeneration"] == 4 and status["botId"] == "ns:a"
    assert (status["revision"], status["replicas"], status["servedReplicas"]) == (7, 2, 2)
    assert status["served"] == "2/2"


def test_each_way_of_not_being_ready_has_its_reason() -> None:
    cases = {
        "InvalidSpec": (Applied(invalid="spec.llm: bad"), None),
        "SecretMissing": (Applied(secret_missing="Secret 'k' not found"), None),
        "StoreUnavailable": (Applied(unavailable="connection refused"), None),
        "RuntimeError": (Applied(revision=7), Serving(2, 1, ("replica r2: boom",))),
        "NoReplicas": (Applied(revision=7), Serving(0, 0)),
        "RollingOut": (Applied(revision=7), Serving(2, 1)),
        "ToolUnavailable": (
            Applied(revision=7),
            Serving(2, 1, ("replica r2: mcp:files is unavailable",), reasons=("ToolUnavailable",)),
        ),
    }
    stalled = {"InvalidSpec", "SecretMissing", "RuntimeError"}
    for reason, (applied, live) in cases.items():
        got = conditions(status_patch(BOT, applied, live, None))
        assert got["Ready"] == ("False", reason)
        if reason in stalled:  # a user must act
            assert got["Stalled"] == ("True", reason) and got["Reconciling"][0] == "False"
        else:  # it goes on by itself
            assert got["Reconciling"] == ("True", reason) and got["Stalled"][0] == "False"


def test_nothing_written_keeps_the_last_good_config_and_says_why() -> None:
    invalid = status_patch(BOT, Applied(invalid="spec.llm: bad"), None, None)
    assert conditions(invalid)["Accepted"] == ("False", "InvalidSpec")
    assert conditions(invalid)["Synced"] == ("False", "InvalidSpec")
    assert "revision" not in invalid and "served" not in invalid  # the merge patch keeps them
    missing = status_patch(BOT, Applied(secret_missing="Secret 'k' not found"), None, None)
    assert conditions(missing)["Synced"] == ("False", "SecretMissing")
    down = status_patch(BOT, Applied(unavailable="connection refused"), None, None)
    synced = next(c for c in down["conditions"] if c["type"] == "Synced")
    assert synced["reason"] == "StoreUnavailable"
    assert synced["message"] == "not written yet: connection refused"


def test_transition_times_hold_and_comparison_ignores_them() -> None:
    first = status_patch(BOT, Applied(revision=7), Serving(2, 1), None)
    for c in first["conditions"]:
        c["lastTransitionTime"] = "2026-01-01T00:00:00Z"
    again = status_patch(BOT, Applied(revision=7), Serving(2, 1), first)
    assert again == first and not differs(again, first)
    served = status_patch(BOT, Applied(revision=7), Serving(2, 2), first)
    assert differs(served, first)
    ready = next(c for c in served["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] != "2026-01-01T00:00:00Z"
    # only the fields of the patch count: a merge patch leaves the others as they are
    assert not differs({"observedGeneration": 4}, {"observedGeneration": 4, "revision": 7})
    assert differs({"observedGeneration": 4}, None)
    assert comparable(None) is None and comparable({}) is None


# -- the report cache and the handler's wait ------------------------------------------------


async def test_reports_cache_serves_timers_from_cache_but_waiters_fresh_reads() -> None:
    store = MemoryConfigStore()
    cache = ReportsCache(store, ttl=60)
    now = datetime.now(UTC)
    await store.report(ReplicaReport("r1", synced_revision=1, heartbeat_at=now))
    assert [r.synced_revision for r in await cache.get(60)] == [1]
    await store.report(ReplicaReport("r1", synced_revision=2, heartbeat_at=now))
    # a read within the ttl: the cached one, whatever changed since
    assert [r.synced_revision for r in await cache.get(60)] == [1]
    # a handler waiting for its write to be served: a read that began after it asked
    assert [r.synced_revision for r in await cache.get(60, newer_than=time.monotonic())] == [2]
    await store.close()


class CountingStore(MemoryConfigStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def replica_reports(self, *, max_age_seconds: float) -> list[ReplicaReport]:
        self.reads += 1
        return await super().replica_reports(max_age_seconds=max_age_seconds)


async def test_the_handler_returns_as_soon_as_every_replica_serves_it() -> None:
    store = CountingStore()
    cache = ReportsCache(store, ttl=0)
    await store.report(report("r1", 1))
    await store.report(report("r2", 1))

    async def later() -> None:
        await asyncio.sleep(0.05)
        await store.report(report("r1", 5))
        await store.report(report("r2", 5))

    catching_up = asyncio.create_task(later())
    began = time.monotonic()
    live = await wait_served(cache, "ns:a", 5, wait=10, max_age=60)
    await catching_up
    assert live == Serving(2, 2) and time.monotonic() - began < 5
    assert cache.waiting == 0


async def test_the_handler_waits_no_longer_than_told_and_not_for_an_error() -> None:
    store = CountingStore()
    cache = ReportsCache(store, ttl=0)
    await store.report(report("r1", 1))
    began = time.monotonic()
    live = await wait_served(cache, "ns:a", 5, wait=0.1, max_age=60)
    assert live == Serving(1, 0) and 0.1 <= time.monotonic() - began < 2
    assert store.reads > 1  # it kept asking meanwhile
    await store.report(report("r1", 5, BotReport("ns:a", None, None, "boom", 5)))
    reads = store.reads
    live = await wait_served(cache, "ns:a", 5, wait=10, max_age=60)
    assert live.errors == ("replica r1: boom",) and store.reads == reads + 1


def test_a_fallback_serving_shows_in_the_status_until_the_primary_serves_again() -> None:
    primary = status_patch(BOT, Applied(revision=7), Serving(2, 2), None)
    assert "llm" not in primary and "LLMFallback" not in conditions(primary)

    live = Serving(2, 2, fallbacks=(("small@backup:8000", 1),))
    fallback = status_patch(BOT, Applied(revision=7), live, primary)
    assert fallback["llm"] == {"servedBy": [{"endpoint": "small@backup:8000", "replicas": 1}]}
    assert conditions(fallback)["LLMFallback"] == ("True", "FallbackServing")
    assert conditions(fallback)["Ready"] == ("True", "Serving")  # a fallback still serves
    (cond,) = [c for c in fallback["conditions"] if c["type"] == "LLMFallback"]
    assert cond["message"] == "served by fallback small@backup:8000 on 1 of 2 replicas"
    assert differs(fallback, primary)
    assert not differs(status_patch(BOT, Applied(revision=7), live, fallback), fallback)

    two = Serving(1, 1, fallbacks=(("a@h", 1), ("b@h", 1)))
    (cond,) = [
        c
        for c in status_patch(BOT, Applied(revision=7), two, None)["conditions"]
        if c["type"] == "LLMFallback"
    ]
    assert cond["message"] == "served by fallback a@h on 1 of 1 replica; b@h on 1 of 1 replica"

    # the primary again: the merge patch deletes status.llm, the condition list drops it
    back = status_patch(BOT, Applied(revision=7), Serving(2, 2), fallback)
    assert back["llm"] is None and "LLMFallback" not in conditions(back)
    assert differs(back, fallback)
    settled = {k: v for k, v in back.items() if k != "llm"}
    assert not differs(status_patch(BOT, Applied(revision=7), Serving(2, 2), back), settled)
    assert "llm" not in status_patch(BOT, Applied(revision=7), Serving(2, 2), back)


# -- MCP servers: ToolUnavailable and the tools they offer ----------------------------------

UNAVAILABLE = "tool source 'mcp:files' is unavailable: connection refused"


def test_tool_reasons_and_counts_are_collected_from_the_replicas() -> None:
    reports = [
        report("r1", 10, BotReport("ns:a", 1, 9, UNAVAILABLE, 10, reason="ToolUnavailable")),
        report("r2", 10, BotReport("ns:a", 2, 10, tools=(("files", 2), ("wiki", 5)))),
        report("r3", 10, BotReport("ns:a", 2, 10, tools=(("files", 2), ("wiki", 4)))),
        report("r4", 10, BotReport("ns:a", 2, 10, tools=(("files", 3),))),
        report("r5", 10, BotReport("ns:b", 2, 10, "other", 10, reason="Other", tools=(("x", 1),))),
        # an older revision's failure is no reason for this one
        report("r6", 10, BotReport("ns:a", 1, 8, "old", 8, reason="Old", tools=(("files", 2),))),
    ]
    assert serving_from(reports, "ns:a", 10) == Serving(
        replicas=6,
        served=5,
        errors=(f"replica r1: {UNAVAILABLE}",),
        reasons=("ToolUnavailable",),
        # files: 2 on three replicas, 3 on one; wiki: a tie, the smaller count
        tools=(("files", 2, 4), ("wiki", 4, 2)),
    )
    assert serving_from(reports[4:5], "ns:a", 10) == Serving(replicas=1, served=1)


def test_an_unlistable_mcp_server_is_tool_unavailable_until_it_answers() -> None:
    serving = status_patch(BOT, Applied(revision=7), Serving(2, 2), None)
    assert "tools" not in serving
    errors = (f"replica r1: {UNAVAILABLE}", "replica r2: plain failure")
    live = Serving(2, 0, errors, reasons=("ToolUnavailable",))
    down = status_patch(BOT, Applied(revision=7), live, serving)
    (ready,) = [c for c in down["conditions"] if c["type"] == "Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "ToolUnavailable")
    assert ready["message"] == "; ".join(errors)  # the replicas' errors, as for other errors
    # the replicas retry by themselves: reconciling, not stalled
    assert conditions(down)["Reconciling"] == ("True", "ToolUnavailable")
    assert conditions(down)["Stalled"] == ("False", "NotStalled")
    assert "tools" not in down  # nothing reported, nothing to remove

    up = Serving(2, 2, tools=(("files", 2, 2), ("wiki", 0, 1)))
    listed = status_patch(BOT, Applied(revision=7), up, down)
    assert conditions(listed)["Ready"] == ("True", "Serving")
    assert listed["tools"] == {
        "mcp": [
            {"name": "files", "tools": 2, "replicas": 2},
            {"name": "wiki", "tools": 0, "replicas": 1},
        ]
    }
    assert not differs(status_patch(BOT, Applied(revision=7), up, listed), listed)

    # no replica reports tools any more (the servers left the spec): the merge patch drops them
    gone = status_patch(BOT, Applied(revision=7), Serving(2, 2), listed)
    assert gone["tools"] is None and differs(gone, listed)
    settled = {k: v for k, v in gone.items() if k != "tools"}
    assert "tools" not in status_patch(BOT, Applied(revision=7), Serving(2, 2), settled)
