"""The operator's handlers and logic, against a real (memory) config store.

The handler functions are called as kopf calls them (keyword arguments, a ``kopf.Patch``); the
Kubernetes reads beside kopf (Secret versions) are a real implementation of their protocol.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import kopf

from kubebots.operator.handlers import (
    FINALIZER,
    bot_event,
    build_registry,
    make_feed,
    secret_changed,
)
from kubebots.operator.reconcile import SecretMissingError, forget_orphans
from kubebots.operator.settings import OperatorSettings
from kubebots.operator.status_feed import StatusFeed
from kubebots.operator.tombstones import Tombstones
from kubebots.runtime.store import BotReport, MemoryConfigStore, ReplicaReport, StoreError

LOG = logging.getLogger("test.operator")


class Secrets:
    """Secret resourceVersions by (namespace, name); a missing one raises like the API would."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, str], str] = {}

    async def version(self, namespace: str, name: str, key: str) -> str:
        try:
            return self.versions[(namespace, name)]
        except KeyError:
            raise SecretMissingError(
                f"Secret '{name}' not found in namespace '{namespace}'"
            ) from None


class Patches:
    """The status patches the controller sends, in order; a Bot in ``gone`` answers 404."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self.gone: set[str] = set()

    async def patch(self, namespace: str, name: str, status: Any) -> bool:
        if name in self.gone:
            return False
        self.sent.append((namespace, name, dict(status)))
        return True

    def last(self) -> dict[str, Any]:
        return self.sent[-1][2]


def memo(store: MemoryConfigStore, secrets: Secrets | None = None) -> kopf.Memo:
    cfg = OperatorSettings(ready_wait=0.2, replica_max_age=60, reports_ttl=0)
    m = kopf.Memo(cfg=cfg, store=store, secrets=secrets or Secrets(), namespaces=None)
    m.patches = Patches()
    make_feed(m, m.patches)
    m.tombstones = Tombstones(store, retry=0.01)
    m.finalizers = Finalizers()
    return m


def feed_of(m: kopf.Memo) -> StatusFeed:
    feed: StatusFeed = m.status_feed
    return feed


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


SPEC = {"llm": {"provider": "echo"}, "systemPrompt": "hi"}


async def event(
    m: kopf.Memo,
    meta_: dict[str, Any],
    spec: dict[str, Any],
    status: dict[str, Any] | None = None,
    type: str | None = "MODIFIED",
) -> kopf.Patch:
    """One Bot watch event, as kopf delivers it; the patch kopf would send."""
    patch = kopf.Patch()
    await bot_event(
        type=type, meta=meta_, spec=spec, status=status or {}, patch=patch, memo=m, logger=LOG
    )
    return patch


async def run_reconcile(
    m: kopf.Memo, meta_: dict[str, Any], spec: dict[str, Any], status: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An event of a generation the operator has not handled: the status it patches."""
    m.status_feed.forget("default", meta_["name"])  # a new generation or a new operator
    return dict((await event(m, meta_, spec, status))["status"])


def cond(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


async def report(
    store: MemoryConfigStore, replica: str, revision: int, bots: tuple[BotReport, ...] = ()
) -> None:
    await store.report(ReplicaReport(replica, revision, datetime.now(UTC), bots))


async def test_create_writes_the_store_and_waits_for_replicas() -> None:
    store = MemoryConfigStore()
    m = memo(store)
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
    m = memo(store)
    first = await run_reconcile(m, meta(), SPEC)
    await report(store, "r1", first["revision"])
    await report(store, "r2", first["revision"])
    updated = {**SPEC, "systemPrompt": "v2"}
    status = await run_reconcile(m, meta(2), updated, first)
    assert status["revision"] > first["revision"]
    assert cond(status, "Ready")["reason"] == "RollingOut"
    assert status["served"] == "0/2"
    # the controller takes over from the handler: it patches as the replicas catch up
    feed, patches = feed_of(m), m.patches
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
    m = memo(store)
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


async def test_missing_secret_and_rotation() -> None:
    store = MemoryConfigStore()
    secrets = Secrets()
    m = memo(store, secrets)
    spec = {
        "llm": {
            "provider": "openai",
            "model": "m",
            "baseUrl": "http://llm:8000/v1",
            "apiKeySecretRef": {"name": "llm-keys", "key": "api-key"},
        }
    }
    status = await run_reconcile(m, meta(), spec)
    assert cond(status, "Ready")["reason"] == "SecretMissing"
    assert cond(status, "Stalled")["status"] == "True"
    assert await store.get("default:support") is None
    secrets.versions[("default", "llm-keys")] = "100"
    status = await run_reconcile(m, meta(), spec)
    entry = await store.get("default:support")
    assert entry is not None and entry.annotations == {"secretVersion": "100"}
    # the Secret is rotated: the Bot is re-written with the new version, same generation
    secrets.versions[("default", "llm-keys")] = "101"
    await secret_changed(
        type="MODIFIED",
        meta={"namespace": "default", "name": "llm-keys", "resourceVersion": "101"},
        memo=m,
        logger=LOG,
    )
    rotated = await store.get("default:support")
    assert rotated is not None and rotated.annotations == {"secretVersion": "101"}
    assert rotated.revision > entry.revision and rotated.generation == 1
    await secret_changed(
        type="MODIFIED",
        meta={"namespace": "other", "name": "llm-keys", "resourceVersion": "5"},
        memo=m,
        logger=LOG,
    )
    assert (await store.get("default:support")).revision == rotated.revision  # type: ignore[union-attr]


async def test_runtime_error_is_reported() -> None:
    store = MemoryConfigStore()
    m = memo(store)
    status = await run_reconcile(m, meta(), SPEC)
    rev = status["revision"]
    await report(store, "r1", rev, (BotReport("default:support", None, None, "boom", rev),))
    await feed_of(m).tick()
    ready = cond(m.patches.last(), "Ready")
    assert ready["reason"] == "RuntimeError" and "boom" in ready["message"]


class Flaky(MemoryConfigStore):
    """A memory store that refuses every call while ``down``, like a PostgreSQL outage."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise StoreError("PostgreSQL connection failed: connection refused")

    async def put(self, bot_id: str, config: Any, **kw: Any) -> int:
        self._check()
        return await super().put(bot_id, config, **kw)

    async def delete(self, bot_id: str) -> int:
        self._check()
        return await super().delete(bot_id)

    async def delete_many(self, bot_ids: Any) -> int:
        self._check()
        return await super().delete_many(bot_ids)

    async def get(self, bot_id: str) -> Any:
        self._check()
        return await super().get(bot_id)

    async def list(self) -> Any:
        self._check()
        return await super().list()


class Finalizers:
    """Each Bot's finalizers as the API would hold them after our JSON patches; ``stale`` names
    Bots whose object changed since the event (the test of the patch fails)."""

    def __init__(self) -> None:
        self.held: dict[str, list[str]] = {}
        self.stale: set[str] = set()
        self.calls = 0

    async def add(self, namespace: str, name: str, meta: Any) -> bool:
        self.calls += 1
        if name in self.stale:
            return False
        self.held[name] = [*(meta.get("finalizers") or []), FINALIZER]
        return True

    async def remove(self, namespace: str, name: str, meta: Any) -> bool:
        self.calls += 1
        if name in self.stale:
            return False
        self.held[name] = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        return True


async def test_the_finalizer_comes_first_then_the_write_and_the_status() -> None:
    store = MemoryConfigStore()
    m = memo(store)
    patch = await event(m, meta(finalizers=["other.io/keep"]), SPEC, type="ADDED")
    assert m.finalizers.held["support"] == ["other.io/keep", FINALIZER]
    assert cond(dict(patch["status"]), "Synced")["status"] == "True"
    assert list(patch) == ["status"]  # kopf's patch: the status only, no diff of the object
    # its own status patch coming back: no write, no new patch, no finalizer call
    calls, revision = m.finalizers.calls, await store.current_revision()
    again = await event(m, meta(), SPEC, dict(patch["status"]))
    assert not again and m.patches.sent == [] and m.finalizers.calls == calls
    assert await store.current_revision() == revision


async def test_a_bot_changed_since_its_event_waits_for_the_next_one() -> None:
    store = MemoryConfigStore()
    m = memo(store)
    m.finalizers.stale.add("support")
    patch = await event(m, meta(finalizers=[]), SPEC, type="ADDED")
    assert not patch and await store.get("default:support") is None  # nothing written yet
    m.finalizers.stale.clear()
    patch = await event(m, meta(finalizers=[]), SPEC)
    assert await store.get("default:support") is not None and "status" in patch


async def test_delete_tombstones_then_releases_the_finalizer() -> None:
    store = MemoryConfigStore()
    m = memo(store)
    await run_reconcile(m, meta(), SPEC)
    writer = asyncio.create_task(m.tombstones.run())
    deleting = meta(deletionTimestamp="2026-12-01T00:00:00Z", finalizers=["a.io/x", FINALIZER])
    await event(m, deleting, SPEC)
    assert await store.get("default:support") is None
    assert m.finalizers.held["support"] == ["a.io/x"]  # only ours removed, after the tombstone
    assert feed_of(m).bots == {}  # the controller forgets it
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
    m = memo(store)
    for i in range(200):
        await store.put(f"default:b{i}", SPEC, generation=1, uid=f"u{i}")
    writer = asyncio.create_task(m.tombstones.run())
    deleting = [
        meta(name=f"b{i}", uid=f"u{i}", deletionTimestamp="2026-12-01T00:00:00Z")
        for i in range(200)
    ]
    await asyncio.gather(*(event(m, d, SPEC) for d in deleting))
    assert all(m.finalizers.held[f"b{i}"] == [] for i in range(200))
    assert (await store.list())[0] == [] and m.tombstones.written == 200
    assert sum(store.batches) == 200 and len(store.batches) <= 4  # a few commits, not 200
    writer.cancel()


async def test_a_finalizer_waits_while_the_store_is_down() -> None:
    store = Flaky()
    m = memo(store)
    await run_reconcile(m, meta(), SPEC)
    writer = asyncio.create_task(m.tombstones.run())
    store.down = True
    deleting = meta(deletionTimestamp="2026-12-01T00:00:00Z")
    handler = asyncio.create_task(event(m, deleting, SPEC))
    await asyncio.sleep(0.1)
    assert not handler.done() and m.tombstones.waiting == 1  # the finalizer stays meanwhile
    assert "support" not in m.finalizers.held
    store.down = False
    await asyncio.wait_for(handler, 5)
    assert m.finalizers.held["support"] == []
    assert await store.get("default:support") is None
    writer.cancel()


async def test_deleted_without_our_finalizer_tombstones_only_its_own_entry() -> None:
    store = MemoryConfigStore()
    m = memo(store)
    writer = asyncio.create_task(m.tombstones.run())
    await run_reconcile(m, meta(), SPEC)
    # our finalizer removed by hand: the first event we see is DELETED
    await event(m, meta(finalizers=[]), SPEC, type="DELETED")
    assert (await store.get("default:support")) is None
    # a late tombstone for an old uid never removes the entry of a Bot recreated since
    await store.put("default:support", SPEC, generation=1, uid="new-uid")
    await m.tombstones.write("default:support", uid="uid-1")
    assert (await store.get("default:support")) is not None
    writer.cancel()


async def test_a_store_outage_is_reported_and_retried_by_the_controller() -> None:
    store = Flaky()
    m = memo(store)
    store.down = True
    patch = await event(m, meta(finalizers=[]), SPEC, type="ADDED")
    status = dict(patch["status"])
    assert cond(status, "Ready")["reason"] == "StoreUnavailable"
    assert "connection refused" in cond(status, "Synced")["message"]
    assert m.finalizers.held["support"] == [FINALIZER]  # held before the first write
    feed = feed_of(m)
    assert await feed.resolve() == []  # still down: nothing written, retried later
    store.down = False
    assert await feed.resolve() == ["default:support"]
    await feed.tick()
    assert cond(m.patches.last(), "Synced")["status"] == "True"
    assert (await store.get("default:support")) is not None


async def test_a_restarted_operator_adopts_handled_bots_without_writing() -> None:
    store = MemoryConfigStore()
    first = memo(store)
    status = await run_reconcile(first, meta(), SPEC)
    await report(store, "r1", status["revision"])
    revision = await store.current_revision()
    m = memo(store)  # a new operator: kopf lists every Bot (type None)
    patch = await event(m, meta(), SPEC, status, type=None)
    assert not patch  # nothing patched at once
    assert await feed_of(m).resolve() == []  # one listing resolves every adopted Bot
    await feed_of(m).tick()  # and Ready is recomputed
    assert await store.current_revision() == revision  # nothing rewritten
    assert cond(m.patches.last(), "Ready")["status"] == "True"
    # a Bot whose store entry was lost while the operator was away is written again
    await store.delete("default:support")
    m = memo(store)
    await event(m, meta(), SPEC, status, type=None)
    assert await feed_of(m).resolve() == ["default:support"]


async def test_drift_repair_rewrites_a_wiped_store() -> None:
    store = MemoryConfigStore()
    m = memo(store)
    status = await run_reconcile(m, meta(3), SPEC)
    assert status["observedGeneration"] == 3
    await store.delete("default:support")  # the store lost it
    assert await feed_of(m).repair() == ["default:support"]
    entry = await store.get("default:support")
    assert entry is not None and entry.generation == 3
    assert await feed_of(m).repair() == []  # current now: nothing rewritten


async def test_orphans_are_tombstoned() -> None:
    store = MemoryConfigStore()
    for name in ("a", "b"):
        await store.put(f"default:{name}", SPEC, generation=1, uid="u")
    await store.put("other:c", SPEC, generation=1, uid="u")
    assert await forget_orphans(store, {"default:a"}, {"default"}) == ["default:b"]
    assert [e.bot_id for e in (await store.list())[0]] == ["default:a", "other:c"]


def test_registry_holds_one_bot_handler_and_no_changing_handlers() -> None:
    registry = build_registry(OperatorSettings())
    assert {h.id for h in registry._watching.get_all_handlers()} == {"bot", "secrets"}
    # no create/update/delete handlers: kopf keeps no diff-base annotation, adds no finalizer
    # of its own and runs no timer per Bot
    assert list(registry._changing.get_all_handlers()) == []
    assert list(registry._spawning.get_all_handlers()) == []


async def test_reports_cache_serves_timers_from_cache_but_waiters_fresh_reads() -> None:
    import time

    from kubebots.operator.status import ReportsCache

    store = MemoryConfigStore()
    cache = ReportsCache(store, ttl=60)
    now = datetime.now(UTC)
    await store.report(ReplicaReport("r1", synced_revision=1, heartbeat_at=now))
    assert [r.synced_revision for r in await cache.get(60)] == [1]
    await store.report(ReplicaReport("r1", synced_revision=2, heartbeat_at=now))
    # a Bot timer within the ttl: the cached read, whatever changed since
    assert [r.synced_revision for r in await cache.get(60)] == [1]
    # a handler waiting for its write to be served: a read that began after it asked
    assert [r.synced_revision for r in await cache.get(60, newer_than=time.monotonic())] == [2]
    await store.close()


async def test_a_handler_patch_landing_after_the_controllers_is_repaired() -> None:
    store = MemoryConfigStore()
    m = memo(store)
    await report(store, "r1", 0)
    status = await run_reconcile(m, meta(), SPEC)  # RollingOut 0/1, patched by kopf later
    await report(store, "r1", status["revision"])
    feed = feed_of(m)
    await feed.tick()
    ready = m.patches.last()
    assert cond(ready, "Ready")["status"] == "True"
    # kopf's patch of the handler's (older) view lands after the controller's
    await event(m, meta(), SPEC, status)
    await feed.tick()
    assert cond(m.patches.last(), "Ready")["status"] == "True"
    assert len(m.patches.sent) == 2
    # the event of the controller's own patch changes nothing
    await event(m, meta(), SPEC, m.patches.last())
    await feed.tick()
    assert len(m.patches.sent) == 2


async def test_the_diff_base_of_older_operators_is_removed() -> None:
    m = memo(MemoryConfigStore())
    old = meta(annotations={"kubebots.io/last-handled-configuration": '{"spec": {}}', "a": "b"})
    patch = await event(m, old, SPEC, type=None)
    assert patch["metadata"]["annotations"] == {"kubebots.io/last-handled-configuration": None}


def test_kopf_leaves_our_finalizer_and_builds_no_diff_base() -> None:
    from kubebots.operator.handlers import tune

    settings = kopf.OperatorSettings()
    tune(settings, OperatorSettings())
    # kopf removes its own finalizer from objects none of its handlers needs it for
    assert settings.persistence.finalizer != FINALIZER
    body = kopf.Body({"metadata": {"name": "b"}, "spec": {"big": "x" * 1000}})
    assert settings.persistence.diffbase_storage.build(body=body) == {}
