"""The operator's typed memo: the context the command resolves, the services startup makes,
shared (never copied) by the per-object memos kopf makes, and stopped at cleanup."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path

import pytest
from kubernetes import client

from kubebots.operator.kube import KubeFinalizers, KubeSecretVersions
from kubebots.operator.liveness import ApiLiveness
from kubebots.operator.services import OperatorContext, OperatorMemo, open_services
from kubebots.operator.settings import OperatorSettings
from kubebots.runtime.configstore import MemoryConfigStore
from kubebots.runtime.kube_config import ClusterAccess

from .support import FakeApiCheck, operator


def context(tmp_path: Path, **settings: object) -> OperatorContext:
    return OperatorContext(
        settings=OperatorSettings(**settings),  # type: ignore[arg-type]
        namespaces=["a"],
        cluster=ClusterAccess({}, tmp_path),
        api_client=client.ApiClient(),  # no call is made here
        liveness=ApiLiveness(FakeApiCheck(), timeout=60),
    )


def test_services_are_there_only_once_started(tmp_path: Path) -> None:
    memo = OperatorMemo(context=context(tmp_path))
    assert memo.context.namespaces == ["a"] and not memo.started
    with pytest.raises(RuntimeError, match="not started"):
        _ = memo.services
    with pytest.raises(RuntimeError, match="no context"):
        _ = OperatorMemo().context


def test_kopfs_copy_per_object_shares_the_services() -> None:
    made = operator(MemoryConfigStore())
    per_object = copy.copy(made.memo)  # what kopf does for each Bot and Secret
    assert isinstance(per_object, OperatorMemo)
    assert per_object.services is made.services
    # one report cache for every handler waiting for its write
    assert per_object.services.reports is made.services.reports
    assert made.services.reports.store is made.services.store


async def test_startup_opens_the_store_and_the_api_calls_and_cleanup_stops_them(
    tmp_path: Path,
) -> None:
    services = await open_services(context(tmp_path, store="memory://", api_threads=3))
    assert isinstance(services.store, MemoryConfigStore)
    assert isinstance(services.secrets, KubeSecretVersions)
    assert isinstance(services.finalizers, KubeFinalizers)
    assert services.status_feed.store is services.store is services.tombstones.store
    assert services.executor is not None and services.executor._max_workers == 3
    services.start()
    assert services.housekeeping.store is services.store
    assert {t.get_name() for t in services.tasks} == {
        "kubebots-status",
        "kubebots-rollouts",
        "kubebots-tombstones",
        "kubebots-housekeeping",
    }
    await asyncio.sleep(0)
    await services.close()
    assert all(t.cancelled() for t in services.tasks)
    assert services.executor._shutdown
