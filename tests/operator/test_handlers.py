"""The operator's handlers and logic, against a real (memory) config store.

The handler functions are called as kopf calls them (keyword arguments, a ``kopf.Patch``); the
Kubernetes reads beside kopf (Secret versions) are a real implementation of their protocol.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf
import pytest

from kubebots.operator.handlers import (
    api_probe,
    bot_event,
    build_registry,
    progress_probe,
    secret_changed,
)
from kubebots.operator.kube import FINALIZER
from kubebots.operator.liveness import ApiLiveness
from kubebots.operator.services import OperatorContext, OperatorMemo
from kubebots.operator.settings import OperatorSettings
from kubebots.runtime.configstore import BotReport, MemoryConfigStore, ReplicaReport
from kubebots.runtime.kube_config import ClusterAccess

from .support import (
    SPEC,
    Clock,
    FakeApiCheck,
    FakeSecretVersions,
    FlakyStore,
    Operator,
    operator,
    secret_spec,
)

LOG = logging.getLogger("test.operator")


def meta(
    generation: int = 1, name: str = "support", uid: str = "uid-1", **more: Any
) -> dict[str, Any]:
    return {
        "namespace": "default",
        "name": name,
        "uid": uid,
        "generation": generation,
        "resourceVersion": "1",
        "finalizers": [FINALIZER],
        **more,
    }


async def event(
    m: Operator,
    meta_: dict[str, Any],
    spec: dict[str, Any],
    status: dict[str, Any] | None = None,
    type: str | None = "MODIFIED",
) -> kopf.Patch:
    """One Bot watch event, as kopf delivers it; the patch kopf would send."""
    patch = kopf.Patch()
    await bot_event(
        type=type,
        meta=meta_,
        spec=spec,
        status=status or {},
        patch=patch,
        memo=m.memo,
        logger=LOG,
    )
    return patch


async def run_reconcile(
    m: Operator, meta_: dict[str, Any], spec: dict[str, Any], status: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An event of a generation the operator has not handled: the status it patches."""
    m.services.status_feed.forget("default", meta_["name"])  # a new generation or a new operator
    return dict((await event(m, meta_, spec, status))["status"])


def cond(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


async def report(
    store: MemoryConfigStore, replica: str, revision: int, bots: tuple[BotReport, ...] = ()
) -> None:
    await store.report(ReplicaReport(replica, revision, datetime.now(UTC), bots))


async def test_create_writes_the_store_and_waits_for_replicas() -> None:
    store = MemoryConfigStore()
    m = operator(store)
    status = await run_reconcile(m, meta(), SPEC)
    entry = await store.get("default:support")
    assert entry is not None and entry.generation == 1 and entry.uid == "uid-1"
    assert dict(entry.config) == SPEC
    assert cond(status, "Accepted")["status"] == "True"
    assert cond(status, "Synced")["status"] == "True"
    ready = cond(status, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "NoReplicas"
    assert cond(status, "Reconciling")["status"] == "True"
    assert status["observedGeneration"] == 1 and status["botId"] == "default:support"

    await report(store, "r1", entry.revision)
    await report(store, "r2", entry.revision)
    status = await run_reconcile(m, meta(), SPEC, status)
    assert cond(status, "Ready")["status"] == "True"
    assert status["served"] == "2/2" and status["servedReplicas"] == 2
    assert cond(status, "Stalled")["status"] == "False"
    assert (await store.current_revision()) == entry.revision  # idempotent: nothing rewritten


async def test_ready_waits_for_every_live_replica() -> None:
    store = MemoryConfigStore()
    m = operator(store)
    first = await run_reconcile(m, meta(), SPEC)
    await report(store, "r1", first["revision"])
    await report(store, "r2", first["revision"])
    updated = {**SPEC, "systemPrompt": "v2"}
    status = await run_reconcile(m, meta(2), updated, first)
    assert status["revision"] > first["revision"]
    assert cond(status, "Ready")["reason"] == "RollingOut"
    assert status["served"] == "0/2"
    # the controller takes over from the handler: it patches as the replicas catch up
    feed, patches = m.services.status_feed, m.patcher
    await feed.tick()
    assert patches.sent == []  # nothing changed since the handler's own status
    await report(store, "r1", status["revision"])
    assert await feed.tick() is True  # still pending: the next tick comes soon
    assert patches.last()["served"] == "1/2"
    await report(store, "r2", status["revision"])
    await feed.tick()
    assert cond(patches.last(), "Ready")["status"] == "True"
    assert patches.sent[-1][:2] == ("default", "support")


async def test_invalid_spec_stalls_and_keeps_the_last_good_config() -> None:
    store = MemoryConfigStore()
    m = operator(store)
    await run_reconcile(m, meta(), SPEC)
    bad = {"llm": {"provider": "echo", "apiKey": "sk-NEVER-STORE"}, "systemPrompt": "x"}
    status = await run_reconcile(m, meta(2), bad)
    assert cond(status, "Accepted")["status"] == "False"
    assert cond(status, "Ready")["reason"] == "InvalidSpec"
    assert cond(status, "Stalled")["status"] == "True"
    assert "apiKeyEnv or apiKeySecretRef" in cond(status, "Stalled")["message"]
    assert "sk-NEVER-STORE" not in str(status)
    entry = await store.get("default:support")
    assert entry is not None and entry.generation == 1 and dict(entry.config) == SPEC


def secret_event(name: str, version: str, *keys: str, namespace: str = "default") -> Any:
    """The arguments of one Secret watch event, as kopf passes them."""
    meta = {"namespace": namespace, "name": name, "resourceVersion": version}
    return {"meta": meta, "body": {"metadata": meta, "data": dict.fromkeys(keys, "eA==")}}


async def test_missing_secret_and_rotation() -> None:
    store = MemoryConfigStore()
    secrets = FakeSecretVersions()
    m = operator(store, secrets)
    spec = secret_spec("llm-keys", "api-key")
    status = await run_reconcile(m, meta(), spec)
    assert cond(status, "Ready")["reason"] == "SecretMissing"
    assert cond(status, "Stalled")["status"] == "True"
    assert await store.get("default:support") is None
    secrets.put("default", "llm-keys", "100", "api-key")
    status = await run_reconcile(m, meta(), spec)
    entry = await store.get("default:support")
    assert entry is not None and entry.annotations == {"secretVersion": "100"}
    # the Secret is rotated: the Bot is re-written with the new version, same generation
    secrets.put("default", "llm-keys", "101", "api-key")
    changed = secret_event("llm-keys", "101", "api-key")
    await secret_changed(type="MODIFIED", memo=m.memo, logger=LOG, **changed)
    rotated = await store.get("default:support")
    assert rotated is not None and rotated.annotations == {"secretVersion": "101"}
    assert rotated.revision > entry.revision and rotated.generation == 1
    changed = secret_event("llm-keys", "5", "api-key", namespace="other")
    await secret_changed(type="MODIFIED", memo=m.memo, logger=LOG, **changed)
    assert (await store.get("default:support")).revision == rotated.revision  # type: ignore[union-attr]


async def test_a_secret_that_loses_the_key_a_bot_names_stalls_it_and_keeps_its_config() -> None:
    store = MemoryConfigStore()
    secrets = FakeSecretVersions()
    m = operator(store, secrets)
    secrets.put("default", "llm-keys", "100", "api-key")
    await run_reconcile(m, meta(), secret_spec("llm-keys", "api-key"))
    entry = await store.get("default:support")
    assert entry is not None
    # the Secret changes, but without the Bot's key: nothing is written (replicas would fail
    # to read it), the Bot shows SecretMissing and keeps its last good config
    secrets.put("default", "llm-keys", "101", "other-key")
    changed = secret_event("llm-keys", "101", "other-key")
    await secret_changed(type="MODIFIED", memo=m.memo, logger=LOG, **changed)
    assert await store.get("default:support") == entry
    await m.services.status_feed.tick()
    status = m.patcher.last()
    assert cond(status, "Ready")["reason"] == "SecretMissing"
    assert "has no key 'api-key'" in cond(status, "Ready")["message"]
    # the key comes back: written with the Secret's version, Ready follows the new revision
    secrets.put("default", "llm-keys", "102", "api-key", "other-key")
    changed = secret_event("llm-keys", "102", "api-key", "other-key")
    await secret_changed(type="MODIFIED", memo=m.memo, logger=LOG, **changed)
    back = await store.get("default:support")
    assert back is not None and back.annotations == {"secretVersion": "102"}
    await m.services.status_feed.tick()
    assert cond(m.patcher.last(), "Synced")["status"] == "True"
    assert m.patcher.last()["revision"] == back.revision


class Listings(MemoryConfigStore):
    """Counts the store listings."""

    def __init__(self) -> None:
        super().__init__()
        self.listings = 0

    async def list(self) -> Any:
        self.listings += 1
        return await super().list()


async def test_only_a_secret_a_bot_names_costs_a_store_read() -> None:
    store = Listings()
    m = operator(store)
    await run_reconcile(m, meta(), secret_spec("llm-keys"))
    for kind in ("ADDED", "MODIFIED", None):
        changed = secret_event("unrelated", "9", "token")
        await secret_changed(type=kind, memo=m.memo, logger=LOG, **changed)
    changed = secret_event("llm-keys", "9", "k")
    await secret_changed(type="DELETED", memo=m.memo, logger=LOG, **changed)
    assert store.listings == 0
    await secret_changed(type="ADDED", memo=m.memo, logger=LOG, **changed)
    assert store.listings == 1


async def test_runtime_error_is_reported() -> None:
    store = MemoryConfigStore()
    m = operator(store)
    status = await run_reconcile(m, meta(), SPEC)
    rev = status["revision"]
    await report(store, "r1", rev, (BotReport("default:support", None, None, "boom", rev),))
    await m.services.status_feed.tick()
    ready = cond(m.patcher.last(), "Ready")
    assert ready["reason"] == "RuntimeError" and "boom" in ready["message"]


async def test_the_finalizer_comes_first_then_the_write_and_the_status() -> None:
    store = MemoryConfigStore()
    m = operator(store)
    patch = await event(m, meta(finalizers=["other.io/keep"]), SPEC, type="ADDED")
    assert m.finalizers.held["support"] == ["other.io/keep", FINALIZER]
    assert cond(dict(patch["status"]), "Synced")["status"] == "True"
    assert list(patch) == ["status"]  # kopf's patch: the status only, no diff of the object
    # its own status patch coming back: no write, no new patch, no finalizer call
    calls, revision = m.finalizers.calls, await store.current_revision()
    again = await event(m, meta(), SPEC, dict(patch["status"]))
    assert not again and m.patcher.sent == [] and m.finalizers.calls == calls
    assert await store.current_revision() == revision


async def test_a_bot_changed_since_its_event_waits_for_the_next_one() -> None:
    store = MemoryConfigStore()
    m = operator(store)
    m.finalizers.stale.add("support")
    patch = await event(m, meta(finalizers=[]), SPEC, type="ADDED")
    assert not patch and await store.get("default:support") is None  # nothing written yet
    m.finalizers.stale.clear()
    patch = await event(m, meta(finalizers=[]), SPEC)
    assert await store.get("default:support") is not None and "status" in patch


async def test_delete_tombstones_then_releases_the_finalizer() -> None:
    store = MemoryConfigStore()
    m = operator(store)
    await run_reconcile(m, meta(), SPEC)
    writer = asyncio.create_task(m.services.tombstones.run())
    deleting = meta(deletionTimestamp="2026-12-01T00:00:00Z", finalizers=["a.io/x", FINALIZER])
    await event(m, deleting, SPEC)
    assert await store.get("default:support") is None
    assert m.finalizers.held["support"] == ["a.io/x"]  # only ours removed, after the tombstone
    assert m.services.status_feed.bots == {}  # the controller forgets it
    # the last event (kopf shows the finalizer still on a DELETED object): nothing more to do
    revision = await store.current_revision()
    await event(m, deleting, SPEC, type="DELETED")
    assert await store.current_revision() == revision
    writer.cancel()


class Batches(MemoryConfigStore):
    """Counts the transactions tombstones are written in."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def delete_many(self, bot_ids: Any) -> int:
        self.batches.append(len(bot_ids))
        return await super().delete_many(bot_ids)


async def test_many_deletes_share_one_writer() -> None:
    store = Batches()
    m = operator(store)
    for i in range(200):
        await store.put(f"default:b{i}", SPEC, generation=1, uid=f"u{i}")
    writer = asyncio.create_task(m.services.tombstones.run())
    deleting = [
        meta(name=f"b{i}", uid=f"u{i}", deletionTimestamp="2026-12-01T00:00:00Z")
        for i in range(200)
    ]
    await asyncio.gather(*(event(m, d, SPEC) for d in deleting))
    assert all(m.finalizers.held[f"b{i}"] == [] for i in range(200))
    assert (await store.list())[0] == [] and m.services.tombstones.written == 200
    # a few commits, not 200; each Bot's entry with its candidate entry's (none: a no-op)
    assert sum(store.batches) == 2 * 200 and len(store.batches) <= 4
    writer.cancel()


async def test_a_finalizer_waits_while_the_store_is_down() -> None:
    store = FlakyStore()
    m = operator(store)
    await run_reconcile(m, meta(), SPEC)
    writer = asyncio.create_task(m.services.tombstones.run())
    store.down = True
    deleting = meta(deletionTimestamp="2026-12-01T00:00:00Z")
    handler = asyncio.create_task(event(m, deleting, SPEC))
    await asyncio.sleep(0.1)
    assert (
        not handler.done() and m.services.tombstones.waiting == 1
    )  # the finalizer stays meanwhile
    assert "support" not in m.finalizers.held
    store.down = False
    await asyncio.wait_for(handler, 5)
    assert m.finalizers.held["support"] == []
    assert await store.get("default:support") is None
    writer.cancel()


async def test_deleted_without_our_finalizer_tombstones_only_its_own_entry() -> None:
    store = MemoryConfigStore()
    m = operator(store)
    writer = asyncio.create_task(m.services.tombstones.run())
    await run_reconcile(m, meta(), SPEC)
    # our finalizer removed by hand: the first event we see is DELETED
    await event(m, meta(finalizers=[]), SPEC, type="DELETED")
    assert (await store.get("default:support")) is None
    # a late tombstone for an old uid never removes the entry of a Bot recreated since
    await store.put("default:support", SPEC, generation=1, uid="new-uid")
    await m.services.tombstones.write("default:support", uid="uid-1")
    assert (await store.get("default:support")) is not None
    writer.cancel()


async def test_a_store_outage_is_reported_and_retried_by_the_controller() -> None:
    store = FlakyStore()
    m = operator(store)
    store.down = True
    patch = await event(m, meta(finalizers=[]), SPEC, type="ADDED")
    status = dict(patch["status"])
    assert cond(status, "Ready")["reason"] == "StoreUnavailable"
    assert "connection refused" in cond(status, "Synced")["message"]
    assert m.finalizers.held["support"] == [FINALIZER]  # held before the first write
    feed = m.services.status_feed
    assert await feed.resolve() == []  # still down: nothing written, retried later
    store.down = False
    assert await feed.resolve() == ["default:support"]
    await feed.tick()
    assert cond(m.patcher.last(), "Synced")["status"] == "True"
    assert (await store.get("default:support")) is not None


async def test_a_restarted_operator_adopts_handled_bots_without_writing() -> None:
    store = MemoryConfigStore()
    first = operator(store)
    status = await run_reconcile(first, meta(), SPEC)
    await report(store, "r1", status["revision"])
    revision = await store.current_revision()
    m = operator(store)  # a new operator: kopf lists every Bot (type None)
    patch = await event(m, meta(), SPEC, status, type=None)
    assert not patch  # nothing patched at once
    assert await m.services.status_feed.resolve() == []  # one listing resolves every adopted Bot
    await m.services.status_feed.tick()  # and Ready is recomputed
    assert await store.current_revision() == revision  # nothing rewritten
    assert cond(m.patcher.last(), "Ready")["status"] == "True"
    # a Bot whose store entry was lost while the operator was away is written again
    await store.delete("default:support")
    m = operator(store)
    await event(m, meta(), SPEC, status, type=None)
    assert await m.services.status_feed.resolve() == ["default:support"]


async def test_drift_repair_rewrites_a_wiped_store() -> None:
    store = MemoryConfigStore()
    m = operator(store)
    status = await run_reconcile(m, meta(3), SPEC)
    assert status["observedGeneration"] == 3
    await store.delete("default:support")  # the store lost it
    assert await m.services.status_feed.repair() == ["default:support"]
    entry = await store.get("default:support")
    assert entry is not None and entry.generation == 3
    assert await m.services.status_feed.repair() == []  # current now: nothing rewritten


def test_registry_holds_one_bot_handler_and_no_changing_handlers() -> None:
    registry = build_registry()
    assert {h.id for h in registry._watching.get_all_handlers()} == {"bot", "secrets"}
    # no create/update/delete handlers: kopf keeps no diff-base annotation, adds no finalizer
    # of its own and runs no timer per Bot
    assert list(registry._changing.get_all_handlers()) == []
    assert list(registry._spawning.get_all_handlers()) == []


async def test_a_handler_patch_landing_after_the_controllers_is_repaired() -> None:
    store = MemoryConfigStore()
    m = operator(store)
    await report(store, "r1", 0)
    status = await run_reconcile(m, meta(), SPEC)  # RollingOut 0/1, patched by kopf later
    await report(store, "r1", status["revision"])
    feed = m.services.status_feed
    await feed.tick()
    ready = m.patcher.last()
    assert cond(ready, "Ready")["status"] == "True"
    # kopf's patch of the handler's (older) view lands after the controller's
    await event(m, meta(), SPEC, status)
    await feed.tick()
    assert cond(m.patcher.last(), "Ready")["status"] == "True"
    assert len(m.patcher.sent) == 2
    # the event of the controller's own patch changes nothing
    await event(m, meta(), SPEC, m.patcher.last())
    await feed.tick()
    assert len(m.patcher.sent) == 2


async def test_the_diff_base_of_older_operators_is_removed() -> None:
    m = operator(MemoryConfigStore())
    old = meta(annotations={"kubebots.io/last-handled-configuration": '{"spec": {}}', "a": "b"})
    patch = await event(m, old, SPEC, type=None)
    assert patch["metadata"]["annotations"] == {"kubebots.io/last-handled-configuration": None}


# -- /healthz ---------------------------------------------------------------------------------


async def test_the_api_probe_raises_a_permanent_error_so_kopf_answers_500_at_once(
    tmp_path: Path,
) -> None:
    api, clock = FakeApiCheck(), Clock()
    context = OperatorContext(
        settings=OperatorSettings(),
        namespaces=None,
        cluster=ClusterAccess({}, tmp_path),
        api_client=None,
        liveness=ApiLiveness(api, timeout=5, clock=clock),
    )
    memo = OperatorMemo(context=context)
    assert await api_probe(memo=memo, logger=LOG) == {"api": "ok"}
    api.error = TimeoutError()
    clock.now += 6
    with pytest.raises(kopf.PermanentError, match="has not answered for 6s"):
        await api_probe(memo=memo, logger=LOG)


async def test_a_status_loop_that_stopped_fails_the_progress_probe() -> None:
    clock = Clock()
    settings = OperatorSettings(stall_timeout=180)
    m = operator(MemoryConfigStore(), settings=settings, clock=clock)
    feed = m.services.status_feed
    await feed.step()
    clock.now += 100
    got = await progress_probe(memo=m.memo)
    assert got["status"] == 100.0 and got["tombstones"] == 0.0
    assert got["rollouts"] == 100.0 - OperatorSettings().rollout_tick  # no tick ran either
    assert 0 < got["tasks"] < 10  # this test's own tasks: none per Bot
    clock.now += 100  # no step for 200 s: the loop is gone or hangs
    with pytest.raises(
        kopf.PermanentError, match="status behind: the status controller last made progress"
    ):
        await progress_probe(memo=m.memo)
    await feed.step()
    await m.services.rollouts.step()
    assert (await progress_probe(memo=m.memo))["status"] == 0.0


async def test_before_startup_the_progress_probe_has_nothing_to_check() -> None:
    got = await progress_probe(memo=OperatorMemo())
    assert set(got) == {"tasks"}
