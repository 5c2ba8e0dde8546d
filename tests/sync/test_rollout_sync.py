"""StoreSync keeps the routing table in step with the store's candidate entries, and sends the
routing's turn counts with the replica report, batched (never a report per turn)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kubebots.runtime import BotContext, BotManager
from kubebots.runtime.configstore import (
    BotReport,
    MemoryConfigStore,
    ReplicaReport,
    ReportingConfigStore,
    SqliteConfigStore,
)
from kubebots.runtime.configstore.rollout import ROLLOUT_ANNOTATION, RolloutState, candidate_id
from kubebots.runtime.configstore.serving import serving_from
from kubebots.runtime.routing import ActiveRollout, RolloutCounters, RolloutTable
from kubebots.runtime.sync import StoreConfigLoader, StoreSync, SyncSettings

from .support import wait_synced

BOT = "ns:a"
CANDIDATE = candidate_id(BOT)
CTX = BotContext(conversation_id="c", client_id="t")
STATE = RolloutState(
    phase="Progressing",
    stable_generation=1,
    step=0,
    weight=10,
    shadow=False,
    attempt=1,
    step_started_at=1_700_000_000.0,
)


def spec(prompt: str, *, flag: str | None = "sorry") -> dict[str, Any]:
    analysis: dict[str, Any] = {"minTurns": 5}
    if flag is not None:
        analysis |= {"flagReplyPattern": flag, "maxFlaggedPercent": 5}
    return {
        "llm": {"provider": "echo", "model": "echo-1"},
        "systemPrompt": prompt,
        "rollout": {"steps": [{"weight": 10}, {"weight": 50}], "analysis": analysis},
    }


def notes(state: RolloutState) -> dict[str, str]:
    return {ROLLOUT_ANNOTATION: state.to_annotation()}


class CountingStore(MemoryConfigStore):
    """The memory store, counting the replica reports written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.reports = 0

    async def report(self, report: ReplicaReport) -> None:
        self.reports += 1
        await super().report(report)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    s: ReportingConfigStore
    if request.param == "memory":
        s = MemoryConfigStore()
    else:
        s = await SqliteConfigStore.open(tmp_path / "store.db", poll_interval=0.01)
    yield s
    await s.close()


def runtime(store: ReportingConfigStore, **settings: Any) -> tuple[BotManager, StoreSync]:
    manager = BotManager(config_loader=StoreConfigLoader(store), env={})
    options: dict[str, Any] = {"replica_id": "r1", "heartbeat_interval": 30.0} | settings
    return manager, StoreSync(store, manager, SyncSettings(**options))


async def synced(store: ReportingConfigStore, sync: StoreSync) -> None:
    async with asyncio.timeout(10):
        await sync.ready.wait()
    await wait_synced(await store.current_revision(), sync)


async def stored(
    store: ReportingConfigStore, until: Callable[[tuple[BotReport, ...]], bool], seconds: float
) -> tuple[BotReport, ...]:
    """The replica's stored bot reports once ``until(bots)`` holds (bounded wait)."""
    async with asyncio.timeout(seconds):
        while True:
            reports = await store.replica_reports(max_age_seconds=60)
            if reports and until(reports[0].bots):
                return reports[0].bots
            await asyncio.sleep(0.01)


async def test_a_candidate_entry_fills_the_table_its_changes_update_it_its_delete_empties_it(
    store: ReportingConfigStore,
) -> None:
    await store.put(BOT, spec("stable"), generation=1, uid="u")
    first = await store.put(CANDIDATE, spec("new"), generation=2, uid="u", annotations=notes(STATE))
    table, counters = RolloutTable(), RolloutCounters()
    manager = BotManager(config_loader=StoreConfigLoader(store), env={})
    sync = StoreSync(
        store, manager, SyncSettings(replica_id="r1"), rollouts=table, counters=counters
    )
    assert (sync.rollouts, sync.counters) == (table, counters)
    async with manager, sync:
        await synced(store, sync)
        rollout = table.get(BOT)
        assert rollout is not None and table.bots() == [BOT]
        assert (rollout.candidate_id, rollout.state, rollout.stable_generation) == (
            CANDIDATE,
            STATE,
            1,
        )
        assert (rollout.candidate_generation, rollout.candidate_revision) == (2, first)
        assert rollout.flag is not None and rollout.flag.search("I am sorry")
        candidate = await manager.get_or_create(CANDIDATE)
        assert candidate.config.system_prompt == "new"
        assert sorted(manager.list_bots()) == [CANDIDATE]  # the stable bot stays lazy

        # the next step: the table follows, the counts of the old window are dropped
        counters.record(BOT, 1, "1.0", latency_s=0.1)
        counters.record(BOT, 2, "1.1", latency_s=0.1)
        step = STATE.evolve(step=1, weight=50)
        second = await store.put(
            CANDIDATE, spec("new", flag=None), generation=2, uid="u", annotations=notes(step)
        )
        await wait_synced(second, sync)
        rollout = table.get(BOT)
        assert rollout is not None and rollout.state == step
        assert (rollout.candidate_revision, rollout.flag) == (second, None)
        assert [c.window for c in counters.snapshot(BOT)] == ["1.1"]

        # promotion: the candidate's spec becomes the Bot's, the candidate entry goes
        await store.put(BOT, spec("new"), generation=2, uid="u")
        await store.delete(CANDIDATE)
        await synced(store, sync)
        assert (len(table), counters.bots()) == (0, [])
        assert await manager.get(CANDIDATE) is None
        await candidate.wait_closed()


async def test_a_candidate_taking_no_traffic_stays_in_the_table_but_is_not_kept_loaded(
    store: ReportingConfigStore,
) -> None:
    await store.put(BOT, spec("stable"), generation=1, uid="u")
    await store.put(CANDIDATE, spec("new"), generation=2, uid="u", annotations=notes(STATE))
    manager, sync = runtime(store)
    async with manager, sync:
        await synced(store, sync)
        candidate = await manager.get_or_create(CANDIDATE)
        back = STATE.evolve(phase="RolledBack", weight=0, reason="AnalysisFailed: errors")
        await store.put(CANDIDATE, spec("new"), generation=2, uid="u", annotations=notes(back))
        await synced(store, sync)
        rollout = sync.rollouts.get(BOT)
        assert rollout is not None and rollout.state == back and not rollout.state.active
        assert await manager.get(CANDIDATE) is None
        await candidate.wait_closed()

        # a retry: progressing again, the candidate is built on its first turn
        retry = STATE.evolve(attempt=2)
        await store.put(CANDIDATE, spec("new"), generation=2, uid="u", annotations=notes(retry))
        await synced(store, sync)
        assert (rollout := sync.rollouts.get(BOT)) is not None and rollout.state == retry
        assert await (await manager.get_or_create(CANDIDATE)).chat("hi", CTX) == "echo: hi"

        # a state this version cannot read: not a rollout as far as this replica knows
        await store.put(CANDIDATE, spec("new"), generation=2, uid="u", annotations={})
        await synced(store, sync)
        assert sync.rollouts.get(BOT) is None
        assert await manager.get(CANDIDATE) is None


async def test_an_invalid_candidate_is_reported_under_its_id_and_takes_no_traffic(
    store: ReportingConfigStore,
) -> None:
    await store.put(BOT, spec("stable"), generation=1, uid="u")
    bad = {"llm": {"provider": "no-such-provider"}}
    rev = await store.put(CANDIDATE, bad, generation=2, uid="u", annotations=notes(STATE))
    manager, sync = runtime(store)
    async with manager, sync:
        await synced(store, sync)
        rollout = sync.rollouts.get(BOT)
        assert rollout is not None and rollout.state == STATE.evolve(weight=0)
        assert rollout.candidate_generation == 2 and rollout.flag is None
        # the candidate's error is its own; the Bot's report (its counts) holds none
        stable, report = sync.report().bots
        assert stable == BotReport(BOT, None, None)
        assert (report.bot_id, report.error_revision) == (CANDIDATE, rev)
        assert report.error and "llm.provider" in report.error and report.rollout == ()


async def test_a_restart_rebuilds_the_table_and_a_resync_drops_rollouts_gone_meanwhile(
    store: ReportingConfigStore,
) -> None:
    await store.put(BOT, spec("stable"), generation=1, uid="u")
    await store.put(CANDIDATE, spec("new"), generation=2, uid="u", annotations=notes(STATE))
    await store.put("ns:b", spec("b"), generation=4, uid="u")
    manager, sync = runtime(store)
    async with manager, sync:
        await synced(store, sync)
        assert sync.rollouts.bots() == [BOT]

    # a new replica process: an empty table, filled from the listing
    manager, sync = runtime(store)
    assert len(sync.rollouts) == 0
    async with manager, sync:
        await synced(store, sync)
        rollout = sync.rollouts.get(BOT)
        assert rollout is not None and rollout.state == STATE

    # a table (and counts) left from before a resync: what the listing lacks goes
    table, counters = RolloutTable(), RolloutCounters()
    table.set(replace(rollout, bot_id="ns:gone", candidate_id=candidate_id("ns:gone")))
    counters.record("ns:gone", 1, "1.0")
    counters.record(BOT, 2, "1.0")
    manager = BotManager(config_loader=StoreConfigLoader(store), env={})
    sync = StoreSync(
        store, manager, SyncSettings(replica_id="r2"), rollouts=table, counters=counters
    )
    async with manager, sync:
        await synced(store, sync)
        assert table.bots() == [BOT] and counters.bots() == [BOT]


async def test_counts_reach_the_stored_report_within_a_second_and_count_as_serving(
    store: ReportingConfigStore,
) -> None:
    stable = await store.put(BOT, spec("stable"), generation=1, uid="u")
    await store.put(CANDIDATE, spec("new"), generation=2, uid="u", annotations=notes(STATE))
    manager, sync = runtime(store)  # the default counters_interval (1 s), a 30 s heartbeat
    async with manager, sync:
        await synced(store, sync)
        assert (await stored(store, bool, 2)) == (BotReport(BOT, None, None),)
        await manager.get_or_create(BOT)  # the stable bot is loaded: its version is reported
        sync.counters.record(BOT, 1, "1.0", latency_s=0.2, tokens=30)
        sync.counters.record(BOT, 2, "1.0", error=True)
        (report,) = await stored(store, lambda bots: bool(bots[0].rollout), 1.5)
        assert (report.bot_id, report.generation, report.revision) == (BOT, 1, stable)
        assert report.error is None
        assert [(c.generation, c.turns, c.errors, c.tokens) for c in report.rollout] == [
            (1, 1, 0, 30),
            (2, 1, 1, 0),
        ]
        # counts change nothing in whether the replica serves the Bot
        reports = await store.replica_reports(max_age_seconds=60)
        assert serving_from(reports, BOT, stable).served == 1


async def test_counts_are_sent_batched_not_per_turn() -> None:
    store = CountingStore()
    await store.put(BOT, spec("stable"), generation=1, uid="u")
    await store.put(CANDIDATE, spec("new"), generation=2, uid="u", annotations=notes(STATE))
    manager, sync = runtime(store, counters_interval=0.25)
    async with manager, sync:
        await synced(store, sync)
        async with asyncio.timeout(5):
            while not store.reports:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # past the first report's short pause
        before = store.reports
        for n in range(200):  # 200 turns over about a second
            sync.counters.record(BOT, 1 + n % 2, "1.0", latency_s=0.05, tokens=10)
            await asyncio.sleep(0.005)
        (report,) = await stored(
            store, lambda bots: sum(c.turns for c in bots[0].rollout) == 200, 1.0
        )
        sent = store.reports - before
        # one report per 0.25 s at most (plus the one under way): never one per turn
        assert 2 <= sent <= 8, sent
        assert [c.turns for c in report.rollout] == [100, 100]

        # nothing new: no more reports until the heartbeat
        quiet = store.reports
        await asyncio.sleep(0.6)
        assert store.reports == quiet


def test_counts_merge_into_the_report_a_bot_already_has() -> None:
    """Unit: the counts go into the Bot's existing report (its error kept), else a new one."""
    store = MemoryConfigStore()
    manager = BotManager(config_loader=StoreConfigLoader(store), env={})
    sync = StoreSync(store, manager, SyncSettings(replica_id="r"))
    sync.status.failed(BOT, "boom", 7)
    sync.counters.record(BOT, 2, "1.0")
    sync.counters.record("ns:z", 3, "1.0")
    sync.rollouts.set(ActiveRollout("ns:m", candidate_id("ns:m"), STATE, 2, 5))
    bots = sync.report().bots
    assert [b.bot_id for b in bots] == [BOT, "ns:m", "ns:z"]
    assert (bots[0].error, bots[0].error_revision, len(bots[0].rollout)) == ("boom", 7, 1)
    assert bots[1] == BotReport("ns:m", None, None)
    assert bots[2].rollout[0].generation == 3
