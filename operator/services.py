"""What the kopf handlers share, typed: kopf's memo holds two objects, each made in one place.

:class:`OperatorContext` is what ``kubebots operator`` resolves before kopf starts (the
settings, the watched namespaces, the cluster access and its API client, the liveness check):
kopf's login and ``/healthz`` need it before the startup handler has run.
:class:`OperatorServices` is what that startup handler makes (:func:`open_services`): the config
store, the Kubernetes calls beside kopf's, the status controller, the rollout controller, the
tombstone writer, the store's housekeeping, the replica-report cache, and the tasks and threads
cleanup stops. Tests build theirs with :func:`assemble` from fakes.

kopf gives each resource object a shallow copy of the memo it was started with: both objects
are shared by every handler, never copied (the report cache serves every waiting handler).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import kopf
from kubernetes import client

from kubebots.runtime.configstore import ReportingConfigStore, open_config_store
from kubebots.runtime.kube_config import ClusterAccess

from .events import EventPoster, KopfEvents, NoEvents
from .housekeeping import Housekeeping, HousekeepingTiming
from .kube import FINALIZER, KubeFinalizers, KubeSecretVersions, KubeStatusPatcher
from .liveness import ApiLiveness
from .reconcile import SecretVersions
from .rollouts import ACTION_ANNOTATION, RolloutController
from .settings import OperatorSettings
from .status import ReportsCache
from .status_feed import StatusFeed, StatusPatcher, Timing
from .tombstones import Tombstones


class Finalizers(Protocol):
    """Our finalizer on a Bot, as of the object ``meta`` shows; False when the object changed
    since (or is gone): its next event tries again."""

    async def add(self, namespace: str, name: str, meta: Mapping[str, Any]) -> bool: ...

    async def remove(self, namespace: str, name: str, meta: Mapping[str, Any]) -> bool: ...


@dataclass(frozen=True)
class OperatorContext:
    """Resolved by ``kubebots operator`` before kopf starts."""

    settings: OperatorSettings
    namespaces: list[str] | None  # None: the whole cluster
    cluster: ClusterAccess
    api_client: Any  # a kubernetes.client.ApiClient built from ``cluster``
    liveness: ApiLiveness


@dataclass
class OperatorServices:
    """Made by the startup handler; the Bot and Secret handlers run only after it."""

    settings: OperatorSettings
    store: ReportingConfigStore
    secrets: SecretVersions
    finalizers: Finalizers
    status_feed: StatusFeed
    tombstones: Tombstones
    reports: ReportsCache  # shared by every handler waiting for its write to be served
    housekeeping: Housekeeping
    rollouts: RolloutController
    executor: ThreadPoolExecutor | None = None  # runs the official client's calls
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        """The status controller, the rollout controller, the tombstone writer and the store's
        housekeeping, each one task until :meth:`close`."""
        self.tasks = [
            asyncio.create_task(self.status_feed.run(), name="kubebots-status"),
            asyncio.create_task(self.rollouts.run(), name="kubebots-rollouts"),
            asyncio.create_task(self.tombstones.run(), name="kubebots-tombstones"),
            asyncio.create_task(self.housekeeping.run(), name="kubebots-housekeeping"),
        ]

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.store.close()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)


def feed_timing(settings: OperatorSettings) -> Timing:
    return Timing(
        fast=settings.status_interval,
        idle=settings.status_idle_interval,
        drift=settings.drift_interval,
        replica_max_age=settings.replica_max_age,
        concurrency=settings.status_patch_concurrency,
        retry=settings.retry_interval,
    )


def housekeeping_timing(settings: OperatorSettings) -> HousekeepingTiming:
    return HousekeepingTiming(
        compact_interval=settings.compact_interval,
        history_retention=settings.history_retention,
        replica_expiry=settings.replica_expiry,
    )


def assemble(
    settings: OperatorSettings,
    store: ReportingConfigStore,
    *,
    secrets: SecretVersions,
    finalizers: Finalizers,
    patcher: StatusPatcher,
    executor: ThreadPoolExecutor | None = None,
    clock: Callable[[], float] = time.monotonic,
    events: EventPoster | None = None,
    wall: Callable[[], float] = time.time,
) -> OperatorServices:
    """The services on ``store``, reaching Kubernetes through the given parts (no events
    without ``events``; ``wall``: the unix clock rollout steps are timed by)."""
    events = events or NoEvents()
    feed = StatusFeed(
        store, patcher, secrets, feed_timing(settings), clock=clock, events=events, wall=wall
    )
    reports = ReportsCache(store, ttl=settings.reports_ttl)
    return OperatorServices(
        settings=settings,
        store=store,
        secrets=secrets,
        finalizers=finalizers,
        status_feed=feed,
        tombstones=Tombstones(store, retry=settings.retry_interval, clock=clock),
        reports=reports,
        housekeeping=Housekeeping(store, housekeeping_timing(settings)),
        rollouts=RolloutController(
            feed,
            reports,
            tick=settings.rollout_tick,
            replica_max_age=settings.replica_max_age,
            wall=wall,
            clock=clock,
            annotation=f"{settings.annotation_prefix}/{ACTION_ANNOTATION}",
        ),
        executor=executor,
    )


async def open_services(context: OperatorContext) -> OperatorServices:
    """The operator's services: its config store and the official client's calls on threads
    of their own (``api_threads``, also the loop's default executor)."""
    settings = context.settings
    # PostgreSQL connects on first use: with the database not up yet the operator still starts
    # (and answers /healthz); its handlers retry until the store answers.
    store = await open_config_store(
        settings.store, prefix=settings.table_prefix, wait_for_server=True
    )
    executor = ThreadPoolExecutor(settings.api_threads, thread_name_prefix="kubebots-api")
    asyncio.get_running_loop().set_default_executor(executor)
    objects = client.CustomObjectsApi(context.api_client)
    return assemble(
        settings,
        store,
        secrets=KubeSecretVersions(client.CoreV1Api(context.api_client)),
        finalizers=KubeFinalizers(objects, FINALIZER),
        patcher=KubeStatusPatcher(objects),
        executor=executor,
        events=KopfEvents(),
    )


class OperatorMemo(kopf.Memo):
    """kopf's memo (``kopf.run(memo=...)``) holding the context and, once started, the
    services."""

    @property
    def context(self) -> OperatorContext:
        context = self.get("context")
        if not isinstance(context, OperatorContext):
            raise RuntimeError("the operator's memo holds no context")
        return context

    @property
    def services(self) -> OperatorServices:
        services = self.get("services")
        if not isinstance(services, OperatorServices):
            raise RuntimeError("the operator's services are not started yet")
        return services

    @services.setter
    def services(self, services: OperatorServices) -> None:
        self["services"] = services

    @property
    def started(self) -> bool:
        return isinstance(self.get("services"), OperatorServices)
