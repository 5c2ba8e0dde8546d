"""The status controller (``StatusFeed``) on its own: a memory store with replica reports, a
recording status patcher and clocks the test moves. Nothing is monkeypatched."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from kubebots.operator.reconcile import Applied, BotRef, apply
from kubebots.operator.status import status_patch
from kubebots.operator.status_feed import StatusFeed, Timing
from kubebots.runtime.configstore import BotReport, MemoryConfigStore, ReplicaReport

from .support import SPEC, Clock, FakeSecretVersions, FakeStatusPatcher, secret_spec

TIMING = Timing(fast=0.25, idle=2.0, drift=60.0, replica_max_age=15.0, concurrency=4)


class Store(MemoryConfigStore):
    """Counts the reads the feed makes."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock.wall)
        self.report_reads = 0
        self.listings = 0

    async def replica_reports(self, *, max_age_seconds: float) -> list[ReplicaReport]:
        self.report_reads += 1
        return await super().replica_reports(max_age_seconds=max_age_seconds)

    async def list(self) -> Any:
        self.listings += 1
        return await super().list()


def ref(name: str, generation: int = 1, spec: dict[str, Any] | None = None) -> BotRef:
    return BotRef("ns", name, f"uid-{name}", generation, spec or SPEC)


def make(clock: Clock) -> tuple[StatusFeed, Store, FakeStatusPatcher, FakeSecretVersions]:
    store, patcher, secrets = Store(clock), FakeStatusPatcher(), FakeSecretVersions()
    feed = StatusFeed(store, patcher, secrets, TIMING, clock=clock, rng=random.Random(7))
    return feed, store, patcher, secrets


async def handled(feed: StatusFeed, bot: BotRef, secrets: FakeSecretVersions) -> Applied:
    """What the create handler does: write, compute its status, hand the Bot over."""
    feed.begin(bot)
    applied = await apply(feed.store, bot, secrets)
    feed.track(bot, applied, status_patch(bot, applied, None, None))
    return applied


async def test_one_report_read_per_tick_and_patches_only_what_changed() -> None:
    clock = Clock()
    feed, store, patcher, secrets = make(clock)
    for i in range(1000):
        await handled(feed, ref(f"b{i:04d}"), secrets)
    revision = await store.current_revision()
    # a replica appears: every Bot is recomputed from one read, patched in bounded batches
    await store.report(ReplicaReport("r1", revision, clock.wall()))
    await feed.tick()
    assert store.report_reads == 1
    assert len(patcher.sent) == 1000 and patcher.ready("b0999") == "Serving"
    assert 1 < patcher.max_in_flight <= TIMING.concurrency
    # idle: nothing pending, nothing patched, the slow tick
    assert await feed.tick() is False
    assert await feed.step() == TIMING.idle
    assert len(patcher.sent) == 1000 and store.report_reads == 3


async def test_pending_bots_follow_the_replicas_on_the_fast_tick() -> None:
    clock = Clock()
    feed, store, patcher, secrets = make(clock)
    await store.report(ReplicaReport("r1", 0, clock.wall()))
    await store.report(ReplicaReport("r2", 0, clock.wall()))
    applied = await handled(feed, ref("a"), secrets)
    assert await feed.step() == TIMING.fast  # written, served nowhere yet
    assert patcher.ready("a") == "RollingOut"
    await store.report(ReplicaReport("r1", applied.revision or 0, clock.wall()))
    await feed.tick()
    assert [s.status["served"] for s in patcher.sent] == ["0/2", "1/2"]
    await store.report(ReplicaReport("r2", applied.revision or 0, clock.wall()))
    await feed.tick()
    assert patcher.ready("a") == "Serving"
    assert await feed.tick() is False  # served everywhere: back to the slow tick


async def test_replica_expiry_and_error_lists_recompute_every_bot() -> None:
    clock = Clock()
    feed, store, patcher, secrets = make(clock)
    await handled(feed, ref("a"), secrets)
    applied = await handled(feed, ref("b"), secrets)
    revision = applied.revision or 0
    await store.report(ReplicaReport("r1", revision, clock.wall()))
    clock.now += 10
    await store.report(ReplicaReport("r2", revision, clock.wall()))
    await feed.tick()
    assert patcher.last()["served"] == "2/2"
    clock.now += 10  # r1's heartbeat is 20 s old: it no longer counts
    await feed.tick()
    assert {s.name: s.status["served"] for s in patcher.sent[-2:]} == {"a": "1/1", "b": "1/1"}
    await store.report(
        ReplicaReport("r2", revision, clock.wall(), (BotReport("ns:a", 1, 1, "boom", revision),))
    )
    await feed.tick()
    assert patcher.ready("a") == "RuntimeError" and len(patcher.sent) == 5  # b unchanged


async def test_a_fallback_serving_a_bot_shows_in_its_status_until_the_primary_is_back() -> None:
    clock = Clock()
    feed, store, patcher, secrets = make(clock)
    await handled(feed, ref("a"), secrets)
    applied = await handled(feed, ref("b"), secrets)
    revision = applied.revision or 0
    await store.report(ReplicaReport("r1", revision, clock.wall()))
    await store.report(ReplicaReport("r2", revision, clock.wall()))
    await feed.tick()
    assert "llm" not in patcher.last() and len(patcher.sent) == 2
    # r2's calls for ns:a are answered by the fallback: a's status says so, b's is unchanged
    fallback = BotReport("ns:a", 1, revision, served_by="small@backup:8000")
    await store.report(ReplicaReport("r2", revision, clock.wall(), (fallback,)))
    await feed.tick()
    assert len(patcher.sent) == 3 and patcher.sent[-1].name == "a"
    status = patcher.last()
    assert status["llm"] == {"servedBy": [{"endpoint": "small@backup:8000", "replicas": 1}]}
    (cond,) = [c for c in status["conditions"] if c["type"] == "LLMFallback"]
    assert (cond["status"], cond["reason"]) == ("True", "FallbackServing")
    assert cond["message"] == "served by fallback small@backup:8000 on 1 of 2 replicas"
    assert patcher.ready("a") == "Serving"
    await feed.tick()
    assert len(patcher.sent) == 3  # nothing new: nothing patched
    # the primary answers again on r2: the field and the condition go
    await store.report(ReplicaReport("r2", revision, clock.wall()))
    await feed.tick()
    assert len(patcher.sent) == 4 and patcher.sent[-1].name == "a"
    status = patcher.last()
    assert status["llm"] is None
    assert [c["type"] for c in status["conditions"]] == [
        "Accepted",
        "Synced",
        "Ready",
        "Stalled",
        "Reconciling",
    ]
    await feed.tick()
    assert len(patcher.sent) == 4


async def test_an_unlistable_mcp_server_is_tool_unavailable_until_a_retry_lists_it() -> None:
    clock = Clock()
    feed, store, patcher, secrets = make(clock)
    applied = await handled(feed, ref("a"), secrets)
    revision = applied.revision or 0
    await store.report(ReplicaReport("r1", revision, clock.wall()))
    await feed.tick()
    assert patcher.ready("a") == "Serving" and "tools" not in patcher.last()
    # r1 cannot list the MCP server: it keeps the last good version and says why
    error = "tool source 'mcp:files' is unavailable: connection refused"
    down = BotReport("ns:a", None, None, error, revision, reason="ToolUnavailable")
    await store.report(ReplicaReport("r1", revision, clock.wall(), (down,)))
    await feed.tick()
    assert patcher.ready("a") == "ToolUnavailable"
    (ready,) = [c for c in patcher.last()["conditions"] if c["type"] == "Ready"]
    assert ready["message"] == f"replica r1: {error}"
    # a retry lists it: Ready again, the server's tools in the status
    up = BotReport("ns:a", 1, revision, tools=(("files", 5),))
    await store.report(ReplicaReport("r1", revision, clock.wall(), (up,)))
    await feed.tick()
    assert patcher.ready("a") == "Serving"
    assert patcher.last()["tools"] == {"mcp": [{"name": "files", "tools": 5, "replicas": 1}]}
    sent = len(patcher.sent)
    await feed.tick()
    assert len(patcher.sent) == sent  # nothing new: nothing patched


async def test_an_older_generation_never_overwrites_a_newer_one() -> None:
    clock = Clock()
    feed, store, patcher, secrets = make(clock)
    await handled(feed, ref("a"), secrets)
    # generation 2 is being handled: the controller keeps off the Bot
    feed.begin(ref("a", 2))
    await store.report(ReplicaReport("r1", await store.current_revision(), clock.wall()))
    await feed.tick()
    assert patcher.sent == []
    # a late hand-over of generation 1 (or its watch event) changes nothing
    old = ref("a", 1)
    feed.track(old, Applied(revision=1), status_patch(old, Applied(revision=1), None, None))
    feed.saw("ns", "a", "uid-a", {"observedGeneration": 1})
    await feed.tick()
    assert patcher.sent == []
    applied = await handled(feed, ref("a", 2, {**SPEC, "systemPrompt": "v2"}), secrets)
    await store.report(ReplicaReport("r1", applied.revision or 0, clock.wall()))
    await feed.tick()
    assert patcher.last()["observedGeneration"] == 2
    assert patcher.ready("a") == "Serving"


async def test_failed_patches_are_retried_and_gone_bots_forgotten() -> None:
    clock = Clock()
    feed, store, patcher, secrets = make(clock)
    await handled(feed, ref("a"), secrets)
    await handled(feed, ref("b"), secrets)
    patcher.fail, patcher.gone = {"a"}, {"b"}
    await store.report(ReplicaReport("r1", await store.current_revision(), clock.wall()))
    assert await feed.tick() is True  # a failed: retried on the fast tick
    assert set(feed.bots) == {("ns", "a")}
    patcher.fail = set()
    await feed.tick()
    assert patcher.ready("a") == "Serving"


async def test_drift_repair_runs_on_its_jittered_period_in_one_listing() -> None:
    clock = Clock()
    feed, store, _patcher, secrets = make(clock)
    for name in ("a", "b", "c"):
        await handled(feed, ref(name), secrets)
    await store.delete("ns:b")  # the store lost one entry
    await feed.step()
    assert store.listings == 0  # not due yet
    clock.now += TIMING.drift * 0.79
    await feed.step()
    assert store.listings == 0
    clock.now += TIMING.drift * 0.42  # past the latest jittered deadline
    delay = await feed.step()
    assert store.listings == 1 and delay <= TIMING.idle
    entry = await store.get("ns:b")
    assert entry is not None and entry.uid == "uid-b"
    assert feed.bots[("ns", "b")].applied == Applied(revision=entry.revision)


async def test_a_bot_waiting_for_its_secret_is_written_once_the_secret_exists() -> None:
    clock = Clock()
    feed, store, patcher, secrets = make(clock)
    spec = secret_spec("keys")
    applied = await handled(feed, ref("a", spec=spec), secrets)
    await handled(feed, ref("b", spec=spec), secrets)
    assert applied.secret_missing is not None
    assert await feed.repair() == [] and await store.get("ns:a") is None
    assert await feed.retry_secret_missing("ns") == []
    secrets.put("ns", "keys", "7", "k")
    assert await feed.retry_secret_missing("other") == []
    assert await feed.retry_secret_missing("ns") == ["ns:a", "ns:b"]  # the Secret's event
    assert await feed.repair() == []
    await store.delete("ns:a")
    assert await feed.repair() == ["ns:a"]  # drift repair
    await store.report(ReplicaReport("r1", await store.current_revision(), clock.wall()))
    await feed.tick()
    assert patcher.ready("a") == "Serving"
    # a rotation re-writes it: Ready follows the new revision
    feed.secrets_rotated({"ns:a": 99})
    await feed.tick()
    assert patcher.ready("a") == "RollingOut" and patcher.last()["revision"] == 99


async def test_the_store_down_pauses_the_feed() -> None:
    clock = Clock()
    feed, store, patcher, secrets = make(clock)
    await handled(feed, ref("a"), secrets)
    await store.close()
    assert await feed.tick() is False
    assert await feed.repair() == []
    assert patcher.sent == []


async def test_fields_a_merge_patch_leaves_behind_cause_no_patch_loop() -> None:
    clock = Clock()
    feed, store, patcher, secrets = make(clock)
    spec = secret_spec("missing")
    bot = ref("a", 2, spec)
    feed.begin(bot)
    applied = await apply(store, bot, secrets)
    mine = status_patch(bot, applied, None, None)
    feed.track(bot, applied, mine)
    # what landed: the handler's status merged over generation 1's (revision, served stay)
    landed = {"revision": 1, "served": "1/1", "replicas": 1, **mine}
    feed.saw("ns", "a", "uid-a", landed)
    await feed.tick()
    await feed.tick()
    assert patcher.sent == []


async def test_the_handler_waits_for_a_patch_in_flight() -> None:
    clock = Clock()
    store, secrets = Store(clock), FakeSecretVersions()
    release = asyncio.Event()
    order: list[str] = []

    class SlowPatcher:
        async def patch(self, namespace: str, name: str, status: Any) -> bool:
            await release.wait()
            order.append(f"feed patched generation {status['observedGeneration']}")
            return True

    feed = StatusFeed(store, SlowPatcher(), secrets, TIMING, clock=clock)
    await handled(feed, ref("a"), secrets)
    await store.report(ReplicaReport("r1", await store.current_revision(), clock.wall()))
    ticking = asyncio.create_task(feed.tick())
    await asyncio.sleep(0.01)  # the feed's patch for generation 1 is in flight
    feed.begin(ref("a", 2))

    async def handler() -> None:
        await feed.settled(ref("a", 2))
        order.append("handler returns, kopf patches generation 2")

    waiting = asyncio.create_task(handler())
    await asyncio.sleep(0.01)
    assert order == []
    release.set()
    await asyncio.gather(ticking, waiting)
    assert order == ["feed patched generation 1", "handler returns, kopf patches generation 2"]


async def test_adopted_bots_are_checked_in_one_listing_without_writes() -> None:
    clock = Clock()
    feed, store, patcher, secrets = make(clock)
    bots = [ref(f"b{i:04d}") for i in range(500)]
    for bot in bots:
        await apply(store, bot, secrets)
    revision = await store.current_revision()
    for bot in bots:  # a restarted operator finds them with their status current
        feed.adopt(bot, {"observedGeneration": 1})
    await feed.step()
    assert store.listings == 0  # the batch gathers first
    clock.now += 1
    await feed.step()
    assert store.listings == 1 and await store.current_revision() == revision
    assert not any(b.unresolved for b in feed.bots.values())
    assert len(patcher.sent) == 500  # the statuses recomputed (no replica: NoReplicas)
