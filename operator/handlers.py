"""The kopf handlers, registered on a registry of their own; the logic lives beside them.

One event handler for Bots, level-triggered (kopf's create/update/delete machinery is not used:
it costs a diff-base annotation per Bot, a diff of the whole object per finalizer patch and a
patch per step). Our finalizer first (a JSON patch of ours, :class:`.kube.KubeFinalizers`);
then a generation not handled yet -> validate, write to the store, wait briefly for the runtime
replicas and patch the status (kopf's patch cycle), then hand the Bot to the operator-wide
status controller (:mod:`.status_feed`: it keeps ``Ready`` current, retries failed writes and
repairs drift; nothing runs per Bot at idle). Found at start with its status current ->
adopted, checked in one batch. Deleted -> tombstoned by the one writer of :mod:`.tombstones`,
then the finalizer is released. Secret events re-write the Bots that reference a rotated
Secret. kopf logs in through :mod:`.login` (a bounded connection pool); ``/healthz`` runs the
probes of :mod:`.liveness`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, cast

import kopf
from kubernetes import client

from kubebots.runtime.schema import API_GROUP, API_VERSION, PLURAL, bot_id_for
from kubebots.runtime.store import StoreError, open_config_store

from .kube import (
    KubeFinalizers,
    KubeSecretVersions,
    KubeStatusPatcher,
    describe_api_error,
    list_bot_ids,
)
from .liveness import api_probe, progress_probe
from .login import login
from .reconcile import Applied, BotRef, apply, forget_orphans, rotate_secret
from .settings import OperatorSettings
from .status import ReportsCache, Serving, serving, status_patch
from .status_feed import StatusFeed, StatusPatcher, Timing
from .tombstones import Tombstones

FINALIZER = "kubebots.io/finalizer"
KOPF_FINALIZER = "kopf.kubebots.io/unused"
#: The diff-base annotation kopf kept on every Bot while the operator used its change handlers
#: (a second copy of the spec in each object); removed in the first patch of a Bot that has it.
LEGACY_DIFF_BASE = "last-handled-configuration"
RESOURCE = (API_GROUP, API_VERSION, PLURAL)


def bot_ref(meta: Mapping[str, Any], spec: Mapping[str, Any]) -> BotRef:
    return BotRef(
        namespace=str(meta["namespace"]),
        name=str(meta["name"]),
        uid=str(meta["uid"]),
        generation=int(meta.get("generation") or 1),
        spec=dict(spec),
    )


def make_feed(memo: Any, patcher: StatusPatcher) -> StatusFeed:
    """The status controller of this operator (in ``memo.status_feed``)."""
    cfg: OperatorSettings = memo.cfg
    timing = Timing(
        fast=cfg.status_interval,
        idle=cfg.status_idle_interval,
        drift=cfg.drift_interval,
        replica_max_age=cfg.replica_max_age,
        concurrency=cfg.status_patch_concurrency,
        retry=cfg.retry_interval,
    )
    feed = StatusFeed(memo.store, patcher, memo.secrets, timing, clock=time.monotonic)
    memo.status_feed = feed
    return feed


def reports_of(memo: Any) -> ReportsCache:
    """The operator's shared replica-report cache (made on first use, for the current store)."""
    cache: ReportsCache | None = getattr(memo, "reports", None)
    if cache is None or cache.store is not memo.store:
        cache = memo.reports = ReportsCache(memo.store, ttl=memo.cfg.reports_ttl)
    return cache


#: How often a waiting handler reads the replica reports: often while few wait (an edit is Ready
#: sooner), less often in a burst (one read serves every waiter; reads are CPU the burst needs).
POLL_FEW, POLL_MANY, MANY = 0.01, 0.05, 8


async def wait_served(memo: Any, bot_id: str, revision: int, cfg: OperatorSettings) -> Serving:
    """Serving state, waiting up to ``ready_wait`` for every live replica to catch up."""
    deadline = time.monotonic() + cfg.ready_wait
    cache = reports_of(memo)
    cache.waiting += 1
    try:
        while True:
            asked = time.monotonic()
            live = await serving(cache, bot_id, revision, cfg.replica_max_age, newer_than=asked)
            if (live.replicas and live.served == live.replicas) or live.errors:
                return live
            if time.monotonic() >= deadline:
                return live
            await asyncio.sleep(POLL_FEW if cache.waiting <= MANY else POLL_MANY)
    finally:
        cache.waiting -= 1


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff-base: with no change handlers kopf needs none, and its default builds one (a deep
    copy of the object) on every event only to compare it with nothing."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def tune(settings: kopf.OperatorSettings, cfg: OperatorSettings) -> None:
    """kopf settings: no diff-base, our annotation prefix, sane timeouts, event level."""
    # kopf removes *its* finalizer from any object no handler of its needs one for: ours is
    # handled by bot_event, so kopf's is given a name of its own (never set on any object).
    settings.persistence.finalizer = KOPF_FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=cfg.annotation_prefix
    )
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.posting.level = logging.WARNING  # events for problems, not for every step
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.execution.max_workers = 8


async def startup(
    *, settings: kopf.OperatorSettings, memo: kopf.Memo, logger: Any, **_: Any
) -> None:
    cfg: OperatorSettings = memo.cfg
    tune(settings, cfg)
    # the official client's calls (finalizers, status patches, Secret reads) run in threads
    memo.api_pool = ThreadPoolExecutor(cfg.api_threads, thread_name_prefix="kubebots-api")
    asyncio.get_running_loop().set_default_executor(memo.api_pool)
    # PostgreSQL connects on first use: with the database not up yet the operator still starts
    # (and answers /healthz); its handlers retry until the store answers.
    memo.store = await open_config_store(cfg.store, prefix=cfg.table_prefix, wait_for_server=True)
    memo.secrets = KubeSecretVersions(client.CoreV1Api(memo.api_client))
    memo.finalizers = KubeFinalizers(client.CustomObjectsApi(memo.api_client), FINALIZER)
    feed = make_feed(memo, KubeStatusPatcher(client.CustomObjectsApi(memo.api_client)))
    memo.tombstones = Tombstones(memo.store, retry=cfg.retry_interval)
    memo.tasks = [
        asyncio.create_task(feed.run(), name="kubebots-status"),
        asyncio.create_task(memo.tombstones.run(), name="kubebots-tombstones"),
    ]
    namespaces: list[str] | None = memo.namespaces
    try:
        live = await list_bot_ids(client.CustomObjectsApi(memo.api_client), namespaces)
        gone = await forget_orphans(memo.store, live, set(namespaces) if namespaces else None)
    except StoreError as exc:
        logger.warning(f"orphan check skipped: config store unavailable ({exc.message})")
        return
    if gone:
        logger.info(f"tombstoned {len(gone)} store entries whose Bot is gone: {gone}")


async def cleanup(*, memo: kopf.Memo, **_: Any) -> None:
    tasks: list[asyncio.Task[None]] = getattr(memo, "tasks", [])
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    store = getattr(memo, "store", None)
    if store is not None:
        await store.close()
    pool: ThreadPoolExecutor | None = getattr(memo, "api_pool", None)
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


class Finalizers(Protocol):
    """Our finalizer on a Bot, as of the object ``meta`` shows; False when the object changed
    since (or is gone): its next event tries again."""

    async def add(self, namespace: str, name: str, meta: Mapping[str, Any]) -> bool: ...

    async def remove(self, namespace: str, name: str, meta: Mapping[str, Any]) -> bool: ...


async def bot_event(
    *,
    type: str | None,
    meta: Mapping[str, Any],
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    patch: kopf.Patch,
    memo: kopf.Memo,
    logger: Any,
    **_: Any,
) -> None:
    """Every Bot watch event (``type`` None: found by kopf's initial listing).

    Level-triggered: our finalizer first (a Bot in the store always has it); a generation the
    operator has not handled is written to the store and its status patched (kopf's patch
    cycle: one merge patch of the status); a deleted Bot is tombstoned, then its finalizer
    released; anything else only shows the status controller the status that landed. kopf keeps
    no diff-base or progress annotation.
    """
    feed: StatusFeed = memo.status_feed
    namespace, name, uid = str(meta["namespace"]), str(meta["name"]), str(meta["uid"])
    if type == "DELETED":
        # Normally tombstoned (below) and forgotten already. Still tracked: gone without our
        # finalizer (removed by hand): its own entry only, never one of a Bot recreated since.
        if feed.forget(namespace, name, uid):
            await memo.tombstones.write(bot_id_for(namespace, name), uid=uid)
        return
    finalizers = list(meta.get("finalizers") or [])
    fin: Finalizers = memo.finalizers
    if meta.get("deletionTimestamp"):
        if FINALIZER in finalizers:
            feed.forget(namespace, name, uid)
            await memo.tombstones.write(bot_id_for(namespace, name))
            await fin.remove(namespace, name, meta)
        return
    if FINALIZER not in finalizers and not await fin.add(namespace, name, meta):
        return  # changed since this event (or gone): the next event comes with the change
    legacy = f"{memo.cfg.annotation_prefix}/{LEGACY_DIFF_BASE}"
    if legacy in (meta.get("annotations") or {}):
        patch.meta.annotations[legacy] = None  # kopf's copy of the spec, from before 0.2
    ref = bot_ref(meta, spec)
    if feed.knows(ref):
        feed.saw(namespace, name, uid, dict(status))
    elif type is None and status.get("observedGeneration") == ref.generation:
        feed.adopt(ref, status)  # handled before this operator started: checked in a batch
    else:
        await reconcile(ref, status, patch, memo, logger)


async def reconcile(
    ref: BotRef, status: Mapping[str, Any], patch: kopf.Patch, memo: kopf.Memo, logger: Any
) -> None:
    """Write a new generation and patch its status (after waiting briefly for the replicas);
    the status controller takes it from there. A failed write is retried by the controller."""
    feed: StatusFeed = memo.status_feed
    feed.begin(ref)
    try:
        applied = await apply(memo.store, ref, memo.secrets)
        live = (
            await wait_served(memo, ref.bot_id, applied.revision, memo.cfg)
            if applied.revision is not None
            else None
        )
    except Exception as exc:  # noqa: BLE001 - store down, Secret read failed: retried
        reason = exc.message if isinstance(exc, StoreError) else describe_api_error(exc)
        logger.warning(f"not written yet, retrying: {reason}")
        failed = Applied(unavailable=reason)
        new = status_patch(ref, failed, None, status)
        feed.failed(ref, failed, new)
        await feed.settled(ref)
        patch.status.update(new)
        return
    if applied.invalid:
        logger.warning(f"invalid spec, the store keeps the last good config: {applied.invalid}")
    if applied.secret_missing:
        logger.warning(applied.secret_missing)
    new = status_patch(ref, applied, live, status)
    feed.track(ref, applied, new)
    await feed.settled(ref)
    patch.status.update(new)


async def secret_changed(
    *, type: str, meta: Mapping[str, Any], memo: kopf.Memo, logger: Any, **_: Any
) -> None:
    if type not in (None, "ADDED", "MODIFIED") or getattr(memo, "store", None) is None:
        return
    if not memo.status_feed.references_secret(str(meta["namespace"]), str(meta["name"])):
        return  # no Bot names it: no store read for the Secrets of the cluster
    try:
        touched = await rotate_secret(
            memo.store, str(meta["namespace"]), str(meta["name"]), str(meta["resourceVersion"])
        )
        entries = [await memo.store.get(bot_id) for bot_id in touched]
        written = await memo.status_feed.retry_secret_missing(str(meta["namespace"]))
    except StoreError as exc:
        logger.warning(f"secret rotation not recorded yet: {exc.message}")
        return
    if touched:
        logger.info(f"Secret {meta['name']} changed: reloading {touched}")
        memo.status_feed.secrets_rotated({e.bot_id: e.revision for e in entries if e})
    if written:
        logger.info(f"Secret {meta['name']} appeared: wrote {written}")


def build_registry(cfg: OperatorSettings) -> kopf.OperatorRegistry:
    """Every handler, on a registry of its own (no import-time registration)."""
    registry = kopf.OperatorRegistry()
    # A registry of our own gets no implicit login: ours uses the pod's service host/port (not
    # kopf's `kubernetes.default.svc`, which needs cluster DNS), else the kubeconfig.
    kopf.on.login(registry=registry, id="cluster-access")(login)
    # /healthz (--liveness) fails once the API has not answered for api_liveness_timeout.
    kopf.on.probe(registry=registry, id="kubernetes-api", errors=kopf.ErrorsMode.PERMANENT)(
        api_probe
    )
    # ... and once a part of the operator has fallen behind for stall_timeout.
    kopf.on.probe(registry=registry, id="progress", errors=kopf.ErrorsMode.PERMANENT)(
        progress_probe
    )
    kopf.on.startup(registry=registry)(startup)
    kopf.on.cleanup(registry=registry)(cleanup)
    kopf.on.event(*RESOURCE, registry=registry, id="bot")(bot_event)
    kopf.on.event("", "v1", "secrets", registry=registry, id="secrets")(secret_changed)
    return registry
