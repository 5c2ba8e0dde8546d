"""The kopf handlers, registered on a registry of their own; the logic lives beside them.

One event handler for Bots, level-triggered (kopf's create/update/delete machinery is not used:
it costs a diff-base annotation per Bot, a diff of the whole object per finalizer patch and a
patch per step). Our finalizer first (a JSON patch of ours, :class:`.kube.KubeFinalizers`);
then a generation not handled yet -> validate, write to the store, wait briefly for the runtime
replicas and patch the status (kopf's patch cycle), then hand the Bot to the operator-wide
status controller (:mod:`.status_feed`: it keeps ``Ready`` current, retries failed writes and
repairs drift; nothing runs per Bot at idle). Found at start with its status current ->
adopted, checked in one batch. Deleted -> tombstoned by the one writer of :mod:`.tombstones`,
then the finalizer is released. Each transition (synced, Ready, a problem, deleted) posts one
event on the Bot (:mod:`.events`). Secret events re-write the Bots that reference a rotated
Secret. A Bot's ``kubebots.io/rollout-action`` annotation (no new generation) goes to the
rollout controller (:mod:`.rollouts`), which acts on each value once. kopf logs in through
:mod:`.login` (a bounded connection pool); ``/healthz`` runs the
two probes here, decided by :mod:`.liveness`. What the handlers share comes typed from kopf's
memo (:mod:`.services`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes import client

from kubebots.runtime import tracing
from kubebots.runtime.configstore import StoreError
from kubebots.runtime.schema import API_GROUP, API_VERSION, PLURAL, bot_id_for

from .events import deleted, rollout_skipped, transitions
from .kopf_settings import tune
from .kube import FINALIZER, describe_failure, list_bot_ids, secret_keys
from .liveness import ApiUnreachableError, Lagging, OperatorStalledError, progress
from .login import login
from .reconcile import Applied, BotRef, apply, forget_orphans, rotate_secret
from .rollouts import ACTION_ANNOTATION
from .services import OperatorMemo, OperatorServices, open_services
from .status import status_patch, wait_served

#: The diff-base annotation kopf kept on every Bot while the operator used its change handlers
#: (a second copy of the spec in each object); removed in the first patch of a Bot that has it.
LEGACY_DIFF_BASE = "last-handled-configuration"
RESOURCE = (API_GROUP, API_VERSION, PLURAL)


def bot_ref(
    meta: Mapping[str, Any], spec: Mapping[str, Any], *, prefix: str = "kubebots.io"
) -> BotRef:
    annotations = meta.get("annotations") or {}
    return BotRef(
        namespace=str(meta["namespace"]),
        name=str(meta["name"]),
        uid=str(meta["uid"]),
        generation=int(meta.get("generation") or 1),
        spec=dict(spec),
        action=str(annotations.get(f"{prefix}/{ACTION_ANNOTATION}") or "").strip(),
    )


async def startup(
    *, settings: kopf.OperatorSettings, memo: OperatorMemo, logger: Any, **_: Any
) -> None:
    """kopf's settings, then the services (in the memo) and their tasks; then store entries
    whose Bot is gone are tombstoned."""
    context = memo.context
    tune(settings, context.settings)
    if not memo.started:  # (kopf retries a startup handler that raised)
        memo.services = await open_services(context)
        memo.services.start()
    services = memo.services
    namespaces = context.namespaces
    try:
        live = await list_bot_ids(client.CustomObjectsApi(context.api_client), namespaces)
        gone = await forget_orphans(services.store, live, set(namespaces) if namespaces else None)
    except StoreError as exc:
        logger.warning(f"orphan check skipped: config store unavailable ({exc.message})")
        return
    if gone:
        logger.info(f"tombstoned {len(gone)} store entries whose Bot is gone: {gone}")


async def cleanup(*, memo: OperatorMemo, **_: Any) -> None:
    if memo.started:
        await memo.services.close()


async def bot_event(
    *,
    type: str | None,
    meta: Mapping[str, Any],
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    patch: kopf.Patch,
    memo: OperatorMemo,
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
    services = memo.services
    feed, tombstones, fin = services.status_feed, services.tombstones, services.finalizers
    feed.events.bind()  # kopf's event queue is reachable from a resource handler only
    namespace, name, uid = str(meta["namespace"]), str(meta["name"]), str(meta["uid"])
    if type == "DELETED":
        # Normally tombstoned (below) and forgotten already. Still tracked: gone without our
        # finalizer (removed by hand): its own entry only, never one of a Bot recreated since.
        if feed.forget(namespace, name, uid):
            await tombstones.write(bot_id_for(namespace, name), uid=uid)
        return
    finalizers = list(meta.get("finalizers") or [])
    if meta.get("deletionTimestamp"):
        if FINALIZER in finalizers:
            feed.forget(namespace, name, uid)
            await tombstones.write(bot_id_for(namespace, name))
            feed.events.post(bot_ref(meta, spec), [deleted()])
            await fin.remove(namespace, name, meta)
        return
    if FINALIZER not in finalizers and not await fin.add(namespace, name, meta):
        return  # changed since this event (or gone): the next event comes with the change
    legacy = f"{services.settings.annotation_prefix}/{LEGACY_DIFF_BASE}"
    if legacy in (meta.get("annotations") or {}):
        patch.meta.annotations[legacy] = None  # kopf's copy of the spec, from before 0.2
    ref = bot_ref(meta, spec, prefix=services.settings.annotation_prefix)
    if feed.knows(ref):
        feed.saw(namespace, name, uid, dict(status))
    elif type is None and status.get("observedGeneration") == ref.generation:
        feed.adopt(ref, status)  # handled before this operator started: checked in a batch
    else:
        with tracing.span("kubebots.operator.reconcile", reconcile_attributes(ref)):
            await reconcile(ref, status, patch, services, logger)
    if ref.action:  # an annotation change bumps no generation: the controller checks it
        services.rollouts.ask(ref, ref.action)


def reconcile_attributes(ref: BotRef) -> dict[str, str | int]:
    """The reconcile span's attributes: which Bot, which generation."""
    return {
        "k8s.namespace.name": ref.namespace,
        "kubebots.bot.name": ref.name,
        "kubebots.bot.id": ref.bot_id,
        "kubebots.bot.generation": ref.generation,
    }


async def reconcile(
    ref: BotRef,
    status: Mapping[str, Any],
    patch: kopf.Patch,
    services: OperatorServices,
    logger: Any,
) -> None:
    """Write a new generation and patch its status (after waiting briefly for the replicas);
    the status controller takes it from there. A failed write is retried by the controller."""
    feed, settings = services.status_feed, services.settings
    feed.begin(ref)
    try:
        applied = await apply(services.store, ref, services.secrets, wall=feed.wall)
        live = (
            await wait_served(
                services.reports,
                ref.bot_id,
                applied.revision,
                wait=settings.ready_wait,
                max_age=settings.replica_max_age,
            )
            if applied.revision is not None
            else None
        )
    except Exception as exc:  # noqa: BLE001 - store down, Secret read failed: retried
        reason = describe_failure(exc)
        logger.warning(f"not written yet, retrying: {reason}")
        tracing.failed(tracing.current_span(), exc)
        failed = Applied(unavailable=reason)
        new = status_patch(ref, failed, None, status)
        feed.failed(ref, failed, new)
        await feed.settled(ref)
        patch.status.update(new)
        return
    if applied.invalid:
        logger.warning(f"invalid spec, the store keeps the last good config: {applied.invalid}")
        tracing.failed(tracing.current_span(), "InvalidSpec")
    if applied.secret_missing:
        logger.warning(applied.secret_missing)
    if applied.skipped:
        logger.info(applied.skipped)
    new = status_patch(ref, applied, live, status)
    feed.events.post(ref, transitions(status, new))
    if applied.skipped:
        feed.events.post(ref, [rollout_skipped(applied.skipped)])
    feed.track(ref, applied, new)
    await feed.settled(ref)
    patch.status.update(new)


async def secret_changed(
    *,
    type: str | None,
    meta: Mapping[str, Any],
    body: Mapping[str, Any],
    memo: OperatorMemo,
    logger: Any,
    **_: Any,
) -> None:
    """A Secret listed, created or changed: the Bots that name it follow (no store read unless
    a tracked Bot of its namespace names it)."""
    if type not in (None, "ADDED", "MODIFIED"):
        return
    services = memo.services
    feed = services.status_feed
    namespace, name = str(meta["namespace"]), str(meta["name"])
    if not feed.references_secret(namespace, name):
        return  # no Bot names it: no store read for the Secrets of the cluster
    try:
        rotation = await rotate_secret(
            services.store, namespace, name, str(meta["resourceVersion"]), secret_keys(body)
        )
        entries = [await services.store.get(bot_id) for bot_id in rotation.rewritten]
        written = await feed.retry_secret_missing(namespace)
        lost = await feed.recheck(rotation.lacking)
    except StoreError as exc:
        logger.warning(f"secret rotation not recorded yet: {exc.message}")
        return
    if rotation.rewritten:
        logger.info(f"Secret {name} changed: reloading {rotation.rewritten}")
        feed.secrets_rotated({e.bot_id: e.revision for e in entries if e})
    if written:
        logger.info(f"Secret {name} appeared: wrote {written}")
    if lost:
        logger.warning(f"Secret {name} lacks the key of {lost}: they keep their last good config")


async def api_probe(*, memo: OperatorMemo, **_: Any) -> dict[str, Any]:
    """``/healthz``: has the API answered lately? (registered with errors=PERMANENT: kopf
    answers 500 at once, no retries)."""
    try:
        return await memo.context.liveness.probe()
    except ApiUnreachableError as exc:
        raise kopf.PermanentError(str(exc)) from None


async def progress_probe(*, memo: OperatorMemo, **_: Any) -> dict[str, Any]:
    """``/healthz``: is the operator keeping up? (its parts exist once started)."""
    lags: dict[str, Any] = {}
    if memo.started:
        services = memo.services
        parts: dict[str, Lagging] = {
            "status": services.status_feed,
            "tombstones": services.tombstones,
            "rollouts": services.rollouts,
        }
        try:
            lags = progress(parts, timeout=services.settings.stall_timeout)
        except OperatorStalledError as exc:
            raise kopf.PermanentError(str(exc)) from None
    # asyncio tasks alive: a handful at idle whatever the number of Bots (none per Bot)
    return {**lags, "tasks": len(asyncio.all_tasks())}


def build_registry() -> kopf.OperatorRegistry:
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
