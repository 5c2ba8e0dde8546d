"""Rollout-aware writes (``apply`` with ``spec.rollout``), against a real memory store: when a
generation becomes a candidate, when it is written directly, and what never resets a rollout's
progress (repeats, drift repair, Secret rotation); the housekeeping that knows candidates."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from kubebots.operator.reconcile import BotRef, apply, forget_orphans, rotate_secret
from kubebots.operator.status_feed import StatusFeed
from kubebots.operator.tombstones import Tombstones
from kubebots.runtime.configstore import MemoryConfigStore
from kubebots.runtime.configstore.rollout import (
    ROLLOUT_ANNOTATION,
    RolloutState,
    candidate_id,
    decode_state,
)

from .support import SPEC, Clock, FakeSecretVersions, FakeStatusPatcher, secret_spec
from .test_status_feed import TIMING

BOT = "ns:canary"
WALL = 1_800_000_000.0
ROLLOUT = {
    "steps": [{"weight": 10, "durationSeconds": 60}, {"weight": 50, "durationSeconds": 60}],
    "analysis": {"intervalSeconds": 10, "minTurns": 5, "maxErrorRatePercent": 20},
}


def spec(prompt: str = "v1", **more: Any) -> dict[str, Any]:
    return {**SPEC, "systemPrompt": prompt, "rollout": ROLLOUT, **more}


def ref(generation: int, body: dict[str, Any], *, uid: str = "uid-1", action: str = "") -> BotRef:
    return BotRef("ns", "canary", uid, generation, body, action=action)


def wall() -> float:
    return WALL


async def first_two(store: MemoryConfigStore, secrets: FakeSecretVersions | None = None) -> None:
    """Generation 1 written (directly: nothing to compare with), generation 2 a candidate."""
    secrets = secrets or FakeSecretVersions()
    assert (await apply(store, ref(1, spec("v1")), secrets, wall=wall)).rollout is None
    assert (await apply(store, ref(2, spec("v2")), secrets, wall=wall)).rollout is not None


async def test_a_change_is_written_as_a_candidate_and_the_stable_entry_stays() -> None:
    store, secrets = MemoryConfigStore(), FakeSecretVersions()
    first = await apply(store, ref(1, spec("v1")), secrets, wall=wall)
    assert first.rollout is None and first.plan is not None  # a new Bot: written at once
    assert await store.get(candidate_id(BOT)) is None
    second = await apply(store, ref(2, spec("v2")), secrets, wall=wall)
    stable, candidate = await store.get(BOT), await store.get(candidate_id(BOT))
    assert stable is not None and stable.generation == 1 and stable.config["systemPrompt"] == "v1"
    assert candidate is not None and candidate.generation == 2 and candidate.uid == "uid-1"
    assert candidate.config["systemPrompt"] == "v2"
    state = decode_state(candidate.annotations)
    assert state == RolloutState(
        phase="Progressing",
        stable_generation=1,
        step=0,
        weight=10,
        shadow=False,
        attempt=1,
        step_started_at=WALL,
    )
    assert second.rollout == state and second.rolling_out and second.progressing
    assert second.revision == candidate.revision and second.stable_revision == stable.revision


async def test_a_repeat_keeps_the_progress_and_writes_nothing() -> None:
    store, secrets = MemoryConfigStore(), FakeSecretVersions()
    await first_two(store, secrets)
    candidate = await store.get(candidate_id(BOT))
    assert candidate is not None
    moved = decode_state(candidate.annotations)
    assert moved is not None
    moved = moved.evolve(step=1, weight=50, step_started_at=WALL + 70)
    annotations = {ROLLOUT_ANNOTATION: moved.to_annotation()}
    revision = await store.put(
        candidate_id(BOT), spec("v2"), generation=2, uid="uid-1", annotations=annotations
    )
    later = lambda: WALL + 500  # noqa: E731 - a repeat much later starts nothing
    again = await apply(store, ref(2, spec("v2")), secrets, wall=later)
    assert again.rollout == moved and again.revision == revision
    assert await store.current_revision() == revision


async def test_a_rotated_secret_is_restamped_keeping_the_rollout() -> None:
    store, secrets = MemoryConfigStore(), FakeSecretVersions()
    secrets.put("ns", "keys", "7", "k")
    body = {**secret_spec("keys"), "rollout": ROLLOUT}
    await apply(store, ref(1, body), secrets, wall=wall)
    applied = await apply(store, ref(2, {**body, "systemPrompt": "v2"}), secrets, wall=wall)
    assert applied.rollout is not None
    rotation = await rotate_secret(store, "ns", "keys", "8", {"k"})
    assert sorted(rotation.rewritten) == [BOT, candidate_id(BOT)]
    candidate = await store.get(candidate_id(BOT))
    assert candidate is not None and candidate.annotations["secretVersion"] == "8"
    assert decode_state(candidate.annotations) == applied.rollout
    # a repeat that reads the rotated version writes nothing; a newer one re-stamps it
    secrets.put("ns", "keys", "8", "k")
    revision = await store.current_revision()
    again = await apply(store, ref(2, {**body, "systemPrompt": "v2"}), secrets, wall=wall)
    assert again.rollout == applied.rollout and await store.current_revision() == revision
    secrets.put("ns", "keys", "9", "k")
    third = await apply(store, ref(2, {**body, "systemPrompt": "v2"}), secrets, wall=wall)
    held = await store.get(candidate_id(BOT))
    assert held is not None and held.annotations["secretVersion"] == "9"
    assert decode_state(held.annotations) == applied.rollout == third.rollout
    assert third.revision == held.revision > revision


async def test_a_newer_generation_restarts_the_rollout_against_the_same_stable() -> None:
    store, secrets = MemoryConfigStore(), FakeSecretVersions()
    await first_two(store, secrets)
    newer = await apply(store, ref(3, spec("v3")), secrets, wall=lambda: WALL + 100)
    assert newer.rollout is not None
    assert newer.rollout.step == 0 and newer.rollout.attempt == 1
    assert newer.rollout.stable_generation == 1 and newer.rollout.step_started_at == WALL + 100
    candidate = await store.get(candidate_id(BOT))
    assert candidate is not None and candidate.generation == 3
    stable = await store.get(BOT)
    assert stable is not None and stable.generation == 1


async def test_a_spec_reverted_to_the_stable_one_ends_the_rollout() -> None:
    store, secrets = MemoryConfigStore(), FakeSecretVersions()
    await first_two(store, secrets)
    reverted = await apply(store, ref(3, spec("v1")), secrets, wall=wall)
    assert reverted.rollout is None and not reverted.rolling_out
    assert await store.get(candidate_id(BOT)) is None
    stable = await store.get(BOT)
    assert stable is not None and stable.generation == 3 and reverted.revision == stable.revision


async def test_removing_spec_rollout_writes_at_once_and_deletes_the_candidate() -> None:
    store, secrets = MemoryConfigStore(), FakeSecretVersions()
    await first_two(store, secrets)
    plain = {**SPEC, "systemPrompt": "v3"}
    applied = await apply(store, ref(3, plain), secrets, wall=wall)
    assert applied.rollout is None and applied.plan is None
    assert await store.get(candidate_id(BOT)) is None
    stable = await store.get(BOT)
    assert stable is not None and stable.generation == 3


async def test_only_a_rollout_change_is_written_at_once() -> None:
    store, secrets = MemoryConfigStore(), FakeSecretVersions()
    await apply(store, ref(1, spec("v1")), secrets, wall=wall)
    shadow = {**spec("v1"), "rollout": {**ROLLOUT, "shadow": True}}
    applied = await apply(store, ref(2, shadow), secrets, wall=wall)
    assert applied.rollout is None and applied.skipped is None
    assert await store.get(candidate_id(BOT)) is None


async def test_a_storage_move_is_written_at_once_and_says_why() -> None:
    store, secrets = MemoryConfigStore(), FakeSecretVersions()
    await apply(store, ref(1, spec("v1")), secrets, wall=wall)
    moved = spec("v2", conversationStorage={"backend": "sqlite", "path": "/tmp/c.db"})
    applied = await apply(store, ref(2, moved), secrets, wall=wall)
    assert applied.rollout is None
    assert applied.skipped is not None and "conversationStorage" in applied.skipped
    assert await store.get(candidate_id(BOT)) is None
    stable = await store.get(BOT)
    assert stable is not None and stable.generation == 2


async def test_the_action_annotation_as_it_stands_is_never_acted_on_for_a_new_rollout() -> None:
    store, secrets = MemoryConfigStore(), FakeSecretVersions()
    await apply(store, ref(1, spec("v1")), secrets, wall=wall)
    applied = await apply(store, ref(2, spec("v2"), action="promote t1"), secrets, wall=wall)
    assert applied.rollout is not None and applied.rollout.handled_action == "promote t1"


async def test_another_object_of_the_same_name_starts_without_a_rollout() -> None:
    store, secrets = MemoryConfigStore(), FakeSecretVersions()
    await first_two(store, secrets)
    recreated = await apply(store, ref(1, spec("v9"), uid="uid-2"), secrets, wall=wall)
    assert recreated.rollout is None
    assert await store.get(candidate_id(BOT)) is None
    stable = await store.get(BOT)
    assert stable is not None and stable.uid == "uid-2"


async def test_orphans_keep_the_candidates_of_live_bots() -> None:
    store = MemoryConfigStore()
    await first_two(store)
    await store.put("ns:gone", SPEC, generation=1, uid="u")
    await store.put(candidate_id("ns:gone"), SPEC, generation=2, uid="u")
    gone = await forget_orphans(store, {BOT}, None)
    assert sorted(gone) == ["ns:gone", candidate_id("ns:gone")]
    entries, _ = await store.list()
    assert sorted(e.bot_id for e in entries) == [BOT, candidate_id(BOT)]


async def test_a_deleted_bots_tombstone_takes_its_candidate_along() -> None:
    store = MemoryConfigStore()
    await first_two(store)
    await store.put("ns:other", SPEC, generation=1, uid="uid-other")
    await store.put(candidate_id("ns:other"), SPEC, generation=2, uid="uid-recreated")
    tombstones = Tombstones(store, retry=0.01)
    writer = asyncio.create_task(tombstones.run())
    try:
        await tombstones.write(BOT)
        # conditional: only the entries of that uid (the candidate is another object's)
        await tombstones.write("ns:other", uid="uid-other")
    finally:
        writer.cancel()
    entries, _ = await store.list()
    assert [e.bot_id for e in entries] == [candidate_id("ns:other")]


async def test_drift_repair_leaves_a_rollout_alone_and_rewrites_a_lost_candidate() -> None:
    clock = Clock()
    store, patcher, secrets = MemoryConfigStore(), FakeStatusPatcher(), FakeSecretVersions()
    feed = StatusFeed(store, patcher, secrets, TIMING, clock=clock, rng=random.Random(1), wall=wall)
    await apply(store, ref(1, spec("v1")), secrets, wall=wall)
    bot = ref(2, spec("v2"))
    feed.begin(bot)
    applied = await apply(store, bot, secrets, wall=wall)
    feed.track(bot, applied, {})
    revision = await store.current_revision()
    assert await feed.repair() == [] and await store.current_revision() == revision
    await store.delete(candidate_id(BOT))  # wiped: written again (a new rollout)
    assert await feed.repair() == [BOT]
    tracked = feed.bots[("ns", "canary")].applied
    assert tracked is not None and tracked.rolling_out
    # a leftover candidate of a Bot written directly is deleted
    plain = ref(3, {**SPEC, "systemPrompt": "v3"})
    feed.begin(plain)
    feed.track(plain, await apply(store, plain, secrets, wall=wall), {})
    await store.put(candidate_id(BOT), spec("v2"), generation=2, uid="uid-1")
    assert await feed.repair() == [] and await store.get(candidate_id(BOT)) is None
