"""The ConfigStore contract (writes and reads), run against memory, SQLite and real PostgreSQL."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kubebots.runtime.configstore.base import (
    BotReport,
    ConfigStore,
    ReplicaReport,
    ReplicaReports,
    ReportingConfigStore,
    StoreEntry,
    StoreError,
    WriteConflict,
)
from kubebots.runtime.errors import InvalidBotIdError

from .util import StoreFactory, take

CONFIG: dict[str, Any] = {
    "spec": {"llm": {"model": "gpt-4o-mini", "temperature": 0.7}, "maxTurns": 20},
    "flags": [True, False, None, 1, -2.5, "zwölf ✓"],
    "empty": {},
}


def summary(entries: list[StoreEntry]) -> list[tuple[str, int, str, int]]:
    return [(e.bot_id, e.generation, e.uid, e.revision) for e in entries]


async def test_implements_both_protocols(store: ReportingConfigStore) -> None:
    assert isinstance(store, ConfigStore)
    assert isinstance(store, ReplicaReports)


async def test_an_empty_store(store: ReportingConfigStore) -> None:
    assert await store.current_revision() == 0
    assert await store.list() == ([], 0)
    assert await store.get("nobody") is None
    assert await store.delete("nobody") == 0
    assert await store.current_revision() == 0


async def test_put_get_list_delete(store: ReportingConfigStore) -> None:
    before = datetime.now(UTC) - timedelta(minutes=5)
    assert await store.put("beta", CONFIG, generation=3, uid="u-b") == 1
    assert await store.put("alpha", {"a": 1}, generation=1, uid="u-a", annotations={"s": "7"}) == 2

    beta = await store.get("beta")
    assert beta is not None
    assert (beta.bot_id, beta.generation, beta.uid, beta.revision) == ("beta", 3, "u-b", 1)
    assert beta.config == CONFIG and type(beta.config) is dict
    assert beta.annotations == {}
    assert beta.updated_at.utcoffset() == timedelta(0)
    assert before < beta.updated_at < datetime.now(UTC) + timedelta(minutes=5)
    alpha = await store.get("alpha")
    assert alpha is not None and alpha.annotations == {"s": "7"}

    entries, revision = await store.list()
    assert summary(entries) == [("alpha", 1, "u-a", 2), ("beta", 3, "u-b", 1)]
    assert revision == 2

    assert await store.delete("alpha") == 3
    assert await store.get("alpha") is None
    assert await store.delete("alpha") == 3  # already a tombstone: nothing written
    assert await store.delete("never-there") == 3
    entries, revision = await store.list()
    assert summary(entries) == [("beta", 3, "u-b", 1)]
    assert revision == 3 == await store.current_revision()


async def test_delete_many_tombstones_every_live_one_in_one_go(store: ReportingConfigStore) -> None:
    for name in ("a", "b", "c"):
        await store.put(name, {"v": name}, generation=1, uid=f"u-{name}")
    await store.delete("c")  # revision 4
    assert await store.delete_many(["a", "c", "never-there", "b"]) == 6
    assert await store.list() == ([], 6)
    events = await take(store, 4, 2)
    assert [(e.type, e.bot_id, e.revision) for e in events] == [
        ("DELETE", "a", 5),
        ("DELETE", "b", 6),
    ]
    assert await store.delete_many([]) == 6 == await store.delete_many(["a"])
    with pytest.raises(InvalidBotIdError):
        await store.delete_many(["ok", "not a bot id!"])


async def test_returned_configs_are_copies(store: ReportingConfigStore) -> None:
    config = {"nested": {"list": [1, 2]}}
    await store.put("bot", config, generation=1, uid="u")
    config["nested"]["list"].append(3)  # the caller's dict changes after the write
    first = await store.get("bot")
    assert first is not None and first.config == {"nested": {"list": [1, 2]}}
    first.config["nested"]["list"].append(4)
    again = await store.get("bot")
    assert again is not None and again.config == {"nested": {"list": [1, 2]}}


async def test_a_put_after_a_tombstone_recreates_the_bot(store: ReportingConfigStore) -> None:
    assert await store.put("bot", {"v": 1}, generation=4, uid="u") == 1
    assert await store.delete("bot") == 2
    # The very same write again: the live entry is gone, so it is no repeat.
    assert await store.put("bot", {"v": 1}, generation=4, uid="u") == 3
    entry = await store.get("bot")
    assert entry is not None and (entry.revision, entry.generation) == (3, 4)
    assert summary((await store.list())[0]) == [("bot", 4, "u", 3)]


async def test_a_repeated_put_writes_nothing(store: ReportingConfigStore) -> None:
    assert await store.put("bot", CONFIG, generation=2, uid="u") == 1
    assert await store.put("other", {}, generation=1, uid="o") == 2
    assert await store.put("bot", dict(CONFIG), generation=2, uid="u") == 1
    assert await store.put("bot", CONFIG, generation=2, uid="u", annotations={}) == 1
    assert await store.current_revision() == 2
    assert len(await take(store, 0, 2)) == 2


async def test_a_stale_generation_is_ignored(store: ReportingConfigStore) -> None:
    assert await store.put("bot", {"v": 5}, generation=5, uid="u") == 1
    assert await store.put("bot", {"v": 4}, generation=4, uid="u", annotations={"a": "b"}) == 1
    entry = await store.get("bot")
    assert entry is not None and entry.config == {"v": 5} and entry.annotations == {}
    assert await store.current_revision() == 1


async def test_writes_that_change_something(store: ReportingConfigStore) -> None:
    assert await store.put("bot", {"v": 1}, generation=1, uid="u") == 1
    assert await store.put("bot", {"v": 2}, generation=1, uid="u") == 2  # same gen, new config
    assert await store.put("bot", {"v": 2}, generation=1, uid="u", annotations={"s": "1"}) == 3
    assert await store.put("bot", {"v": 2}, generation=1, uid="u", annotations={"s": "2"}) == 4
    assert await store.put("bot", {"v": 2}, generation=2, uid="u", annotations={"s": "2"}) == 5
    # A new uid is a re-created Bot: written even with a lower generation.
    assert await store.put("bot", {"v": 0}, generation=1, uid="u2") == 6
    entry = await store.get("bot")
    assert entry is not None
    assert (entry.config, entry.generation, entry.uid, entry.annotations) == ({"v": 0}, 1, "u2", {})


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"bot_id": "bad/id"}, InvalidBotIdError),
        ({"bot_id": ""}, InvalidBotIdError),
        ({"generation": 0}, ValueError),
        ({"generation": True}, ValueError),
        ({"generation": 2**63}, ValueError),
        ({"uid": ""}, ValueError),
        ({"uid": "a\x00b"}, ValueError),
        ({"config": ["not", "a", "mapping"]}, TypeError),
        ({"config": {"x": float("nan")}}, ValueError),
        ({"config": {"x": "nul\x00"}}, ValueError),
        ({"config": {"x": "\ud800"}}, ValueError),
        ({"config": {1: "int key"}}, TypeError),
        ({"config": {"x": {1, 2}}}, TypeError),
        ({"annotations": {"k": 1}}, TypeError),
        ({"annotations": {"k": "\x00"}}, ValueError),
    ],
)
async def test_invalid_writes_are_rejected(
    store: ReportingConfigStore, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    args: dict[str, Any] = {"bot_id": "bot", "config": {}, "generation": 1, "uid": "u"}
    args.update(kwargs)
    with pytest.raises(error):
        await store.put(args.pop("bot_id"), args.pop("config"), **args)
    assert await store.current_revision() == 0


async def test_invalid_reads_are_rejected(store: ReportingConfigStore) -> None:
    with pytest.raises(InvalidBotIdError):
        await store.get("../etc")
    with pytest.raises(InvalidBotIdError):
        await store.delete(" ")
    with pytest.raises(ValueError):
        store.watch(-1)
    with pytest.raises(ValueError):
        await store.compact(-1)
    with pytest.raises(ValueError):
        await store.replica_reports(max_age_seconds=float("inf"))


async def test_revisions_are_gap_free_and_writes_return_them(store: ReportingConfigStore) -> None:
    returned = [
        await store.put("a", {"n": 1}, generation=1, uid="u"),
        await store.put("b", {"n": 1}, generation=1, uid="u"),
        await store.put("a", {"n": 2}, generation=2, uid="u"),
        await store.delete("b"),
        await store.put("b", {"n": 3}, generation=1, uid="u"),
        await store.delete("a"),
    ]
    assert returned == [1, 2, 3, 4, 5, 6]
    assert revisions_of(await take(store, 0, 6)) == returned


def revisions_of(events: list[Any]) -> list[int]:
    return [e.revision for e in events]


async def test_random_writes_match_a_model(store: ReportingConfigStore) -> None:
    """Random puts (fresh, repeated, stale, new uid) and deletes against a dict model."""
    rng = random.Random(20240611)
    model: dict[str, StoreEntry] = {}
    revision = 0
    for _ in range(120):
        bot_id = rng.choice(["a", "b", "c", "d"])
        live = model.get(bot_id)
        if rng.random() < 0.2:
            expected = revision
            if live is not None:
                revision = expected = revision + 1
                del model[bot_id]
            assert await store.delete(bot_id) == expected
            continue
        generation = rng.randint(1, 4)
        uid = rng.choice(["u1", "u1", "u2"])
        config = {"v": rng.randint(0, 2)}
        annotations = rng.choice([None, {"s": "1"}])
        result = await store.put(
            bot_id, config, generation=generation, uid=uid, annotations=annotations
        )
        repeat = (
            live is not None
            and live.uid == uid
            and (
                generation < live.generation
                or (generation, config, annotations or {})
                == (live.generation, live.config, live.annotations)
            )
        )
        if repeat:
            assert live is not None and result == live.revision
            continue
        revision += 1
        assert result == revision
        model[bot_id] = StoreEntry(
            bot_id, config, generation, uid, revision, datetime.now(UTC), annotations or {}
        )
    entries, listed = await store.list()
    assert listed == revision == await store.current_revision()
    assert [
        (e.bot_id, e.config, e.generation, e.uid, e.revision, e.annotations) for e in entries
    ] == [
        (m.bot_id, m.config, m.generation, m.uid, m.revision, m.annotations)
        for _, m in sorted(model.items())
    ]
    # Replaying the watch from 0 rebuilds the same state.
    replayed: dict[str, StoreEntry] = {}
    for event in await take(store, 0, revision):
        if event.entry is None:
            del replayed[event.bot_id]
        else:
            replayed[event.bot_id] = event.entry
    assert sorted(replayed) == sorted(model)
    assert all(replayed[k].config == model[k].config for k in model)


async def test_list_is_one_snapshot(open_store: StoreFactory) -> None:
    """Bot ``b<n>`` is written at revision n: a listing at revision r holds exactly b1..br."""
    writer, reader = await open_store(), await open_store()
    count = 100

    async def write() -> None:
        for n in range(1, count + 1):
            assert await writer.put(f"b{n:04d}", {"n": n}, generation=1, uid="u") == n

    async def read() -> list[int]:
        seen: list[int] = []
        while not seen or seen[-1] < count:
            entries, revision = await reader.list()
            assert [e.bot_id for e in entries] == [f"b{n:04d}" for n in range(1, revision + 1)]
            assert [e.revision for e in entries] == list(range(1, revision + 1))
            seen.append(revision)
            await asyncio.sleep(0.001)  # a reader that never rests would starve the writer
        return seen

    _, seen = await asyncio.wait_for(asyncio.gather(write(), read()), 60)
    assert seen == sorted(seen)


async def test_close_is_idempotent_and_later_calls_fail(store: ReportingConfigStore) -> None:
    await store.put("bot", {}, generation=1, uid="u")
    await store.close()
    await store.close()
    report = ReplicaReport("r", 0, datetime.now(UTC), (BotReport("bot", 1, 1),))
    calls = [
        store.put("bot", {}, generation=2, uid="u"),
        store.delete("bot"),
        store.get("bot"),
        store.list(),
        store.current_revision(),
        store.compact(0),
        store.report(report),
        store.replica_reports(max_age_seconds=1),
        store.expire_replicas(max_age_seconds=1),
    ]
    for call in calls:
        with pytest.raises(StoreError, match="closed"):
            await call
    with pytest.raises(StoreError, match="closed"):
        store.watch(0)


async def test_if_revision_makes_a_put_a_compare_and_swap(store: ReportingConfigStore) -> None:
    first = await store.put("cas", {"v": 1}, generation=1, uid="u", if_revision=0)
    with pytest.raises(WriteConflict, match="read it again"):
        await store.put("cas", {"v": 2}, generation=2, uid="u", if_revision=0)
    second = await store.put("cas", {"v": 2}, generation=2, uid="u", if_revision=first)
    with pytest.raises(WriteConflict):
        await store.put("cas", {"v": 3}, generation=3, uid="u", if_revision=first)
    entry = await store.get("cas")
    assert entry is not None and entry.config == {"v": 2} and entry.revision == second
