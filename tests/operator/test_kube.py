"""The operator's own calls on the official client, against in-memory APIs that answer as the
apiserver does: JSON patches applied with their ``test`` operations, merge patches of the status
subresource, paged listings, Status bodies on errors."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubebots.operator.kube import (
    FINALIZER,
    KubeFinalizers,
    KubeSecretVersions,
    KubeStatusPatcher,
    describe_api_error,
    describe_failure,
    list_bot_ids,
    secret_keys,
    status_kind,
)
from kubebots.operator.reconcile import SecretMissingError
from kubebots.runtime.configstore import StoreError
from kubebots.runtime.schema import API_GROUP, API_VERSION, PLURAL

from .support import FakeCoreV1Api, api_error

BOTS = (API_GROUP, API_VERSION)


class Bots:
    """Bot objects by (namespace, name), as the CustomObjectsApi methods the operator calls
    see them; ``calls`` records each call's content type."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[str] = []
        self.version = 0

    def add(self, namespace: str, name: str, finalizers: list[str] | None = None) -> None:
        self.version += 1
        meta: dict[str, Any] = {
            "namespace": namespace,
            "name": name,
            "resourceVersion": str(self.version),
        }
        if finalizers is not None:
            meta["finalizers"] = list(finalizers)
        self.objects[(namespace, name)] = {"metadata": meta, "spec": {}, "status": {}}

    def meta(self, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.objects[(namespace, name)]["metadata"])

    def _find(self, group: str, version: str, plural: str, namespace: str, name: str) -> Any:
        assert (group, version, plural) == (*BOTS, PLURAL)
        found = self.objects.get((namespace, name))
        if found is None:
            raise api_error(404, "Not Found")
        return found

    def patch_namespaced_custom_object(
        self,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        name: str,
        body: list[dict[str, Any]],
        *,
        _content_type: str,
    ) -> Any:
        self.calls.append(_content_type)
        assert _content_type == "application/json-patch+json"
        obj = self._find(group, version, plural, namespace, name)
        meta = copy.deepcopy(obj["metadata"])
        for op in body:
            parts = op["path"].strip("/").split("/")
            assert parts[0] == "metadata"
            if op["op"] == "test":
                if _at(meta, parts[1:]) != op["value"]:
                    raise api_error(422, "Unprocessable Entity")
            elif parts[1:] == ["finalizers"]:
                meta["finalizers"] = list(op["value"])
            elif parts[1:] == ["finalizers", "-"]:
                meta["finalizers"].append(op["value"])
            else:
                assert op["op"] == "remove" and parts[1] == "finalizers"
                del meta["finalizers"][int(parts[2])]
        self.version += 1
        meta["resourceVersion"] = str(self.version)
        obj["metadata"] = meta
        return obj

    def patch_namespaced_custom_object_status(
        self,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        name: str,
        body: dict[str, Any],
        *,
        _content_type: str,
    ) -> Any:
        self.calls.append(_content_type)
        assert _content_type == "application/merge-patch+json" and set(body) == {"status"}
        obj = self._find(group, version, plural, namespace, name)
        obj["status"] = {**obj["status"], **body["status"]}
        return obj

    def _page(self, items: list[dict[str, Any]], limit: int, token: str | None) -> Any:
        start = int(token or 0)
        rest = start + limit
        more = {"continue": str(rest)} if rest < len(items) else {}
        return {"items": items[start:rest], "metadata": more}

    def list_cluster_custom_object(
        self, group: str, version: str, plural: str, *, limit: int, _continue: str | None
    ) -> Any:
        self.calls.append(f"list all, limit {limit}")
        return self._page(list(self.objects.values()), limit, _continue)

    def list_namespaced_custom_object(
        self,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        *,
        limit: int,
        _continue: str | None,
    ) -> Any:
        self.calls.append(f"list {namespace}, limit {limit}")
        items = [o for (ns, _), o in self.objects.items() if ns == namespace]
        return self._page(items, limit, _continue)


def _at(node: Any, path: list[str]) -> Any:
    """The value at a JSON pointer's parts; a path that is not there holds nothing."""
    for part in path:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (IndexError, KeyError, ValueError):
            return None
    return node


def secret(version: str, **data: str) -> client.V1Secret:
    return client.V1Secret(metadata=client.V1ObjectMeta(resource_version=version), data=data)


# -- Secret versions ------------------------------------------------------------------------


async def test_a_secret_version_is_its_resource_version_when_it_holds_the_key() -> None:
    api = FakeCoreV1Api()
    api.stored[("ns", "keys")] = secret("42", **{"api-key": "c2Vj"})
    versions = KubeSecretVersions(api)  # type: ignore[arg-type]
    assert await versions.version("ns", "keys", "api-key") == "42"
    with pytest.raises(SecretMissingError, match="Secret 'keys' has no key 'other'"):
        await versions.version("ns", "keys", "other")
    with pytest.raises(SecretMissingError, match="Secret 'keys' not found in namespace 'ns2'"):
        await versions.version("ns2", "keys", "api-key")


async def test_a_secret_read_that_fails_otherwise_is_not_a_missing_secret() -> None:
    class Forbidden(FakeCoreV1Api):
        def read_namespaced_secret(self, name: str, namespace: str) -> Any:
            raise api_error(403, "Forbidden")

    with pytest.raises(ApiException) as caught:
        await KubeSecretVersions(Forbidden()).version("ns", "keys", "k")  # type: ignore[arg-type]
    assert caught.value.status == 403


def test_the_keys_of_a_secret_event() -> None:
    body = {"metadata": {"name": "s"}, "data": {"a": "eA=="}, "stringData": {"b": "x"}}
    assert secret_keys(body) == {"a", "b"}
    assert secret_keys({"metadata": {"name": "empty"}, "data": None}) == frozenset()


# -- finalizers -----------------------------------------------------------------------------


async def test_our_finalizer_is_added_after_the_others_as_of_the_version_seen() -> None:
    api = Bots()
    api.add("ns", "a", ["other.io/keep"])
    api.add("ns", "b")
    finalizers = KubeFinalizers(api, FINALIZER)  # type: ignore[arg-type]
    assert await finalizers.add("ns", "a", api.meta("ns", "a")) is True
    assert api.meta("ns", "a")["finalizers"] == ["other.io/keep", FINALIZER]
    assert await finalizers.add("ns", "b", api.meta("ns", "b")) is True  # no list yet
    assert api.meta("ns", "b")["finalizers"] == [FINALIZER]
    assert set(api.calls) == {"application/json-patch+json"}


async def test_a_bot_changed_since_its_event_or_gone_is_left_to_its_next_event() -> None:
    api = Bots()
    api.add("ns", "a")
    seen = api.meta("ns", "a")
    api.add("ns", "a", ["someone.io/else"])  # changed since: a new resourceVersion
    finalizers = KubeFinalizers(api, FINALIZER)  # type: ignore[arg-type]
    assert await finalizers.add("ns", "a", seen) is False
    assert api.meta("ns", "a")["finalizers"] == ["someone.io/else"]
    assert await finalizers.add("ns", "gone", {"resourceVersion": "1"}) is False


async def test_only_our_finalizer_is_removed_and_only_where_the_event_saw_it() -> None:
    api = Bots()
    api.add("ns", "a", ["x.io/first", FINALIZER, "y.io/last"])
    finalizers = KubeFinalizers(api, FINALIZER)  # type: ignore[arg-type]
    seen = api.meta("ns", "a")
    assert await finalizers.remove("ns", "a", seen) is True
    assert api.meta("ns", "a")["finalizers"] == ["x.io/first", "y.io/last"]
    # an event from before another controller removed its own: ours moved, the test fails
    api.add("ns", "b", ["x.io/first", FINALIZER])
    seen = api.meta("ns", "b")
    api.objects[("ns", "b")]["metadata"]["finalizers"] = [FINALIZER]
    assert await finalizers.remove("ns", "b", seen) is False
    assert api.meta("ns", "b")["finalizers"] == [FINALIZER]
    # not ours to remove: no call at all
    calls = len(api.calls)
    assert await finalizers.remove("ns", "b", {"finalizers": ["x.io/first"]}) is True
    assert len(api.calls) == calls


async def test_other_finalizer_patch_errors_are_raised() -> None:
    class Forbidden(Bots):
        def patch_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> Any:
            raise api_error(403, "Forbidden")

    api = Forbidden()
    api.add("ns", "a")
    finalizers = KubeFinalizers(api, FINALIZER)  # type: ignore[arg-type]
    with pytest.raises(ApiException):
        await finalizers.add("ns", "a", api.meta("ns", "a"))


# -- statuses and listings ------------------------------------------------------------------


async def test_a_status_is_a_merge_patch_of_the_status_subresource() -> None:
    api = Bots()
    api.add("ns", "a")
    api.objects[("ns", "a")]["status"] = {"revision": 3, "served": "1/1"}
    patcher = KubeStatusPatcher(api)  # type: ignore[arg-type]
    assert await patcher.patch("ns", "a", {"observedGeneration": 2, "served": "0/1"}) is True
    assert api.objects[("ns", "a")]["status"] == {
        "revision": 3,
        "served": "0/1",
        "observedGeneration": 2,
    }
    assert api.calls == ["application/merge-patch+json"]
    assert await patcher.patch("ns", "gone", {"observedGeneration": 1}) is False


async def test_bots_are_listed_in_pages_per_namespace_or_cluster_wide() -> None:
    api = Bots()
    for i in range(1203):
        api.add("a" if i % 3 else "b", f"bot{i}")
    everything = await list_bot_ids(api, None)  # type: ignore[arg-type]
    assert len(everything) == 1203 and "b:bot0" in everything and "a:bot1" in everything
    assert api.calls == ["list all, limit 500"] * 3
    api.calls.clear()
    only_b = await list_bot_ids(api, ["b"])  # type: ignore[arg-type]
    assert len(only_b) == 401 and all(i.startswith("b:") for i in only_b)
    assert api.calls == ["list b, limit 500"]
    assert await list_bot_ids(api, []) == set()  # type: ignore[arg-type]


# -- errors in one line ---------------------------------------------------------------------


def test_an_api_error_is_described_by_its_status_and_message() -> None:
    body = {"kind": "Status", "message": 'secrets "x" is forbidden', "details": {"kind": "secrets"}}
    forbidden = api_error(403, "Forbidden", body)
    assert describe_api_error(forbidden) == 'HTTP 403 Forbidden: secrets "x" is forbidden'
    assert status_kind(forbidden) == "secrets"
    bare = api_error(404, "Not Found", "404 page not found\n")
    assert describe_api_error(bare) == "HTTP 404 Not Found"
    assert status_kind(bare) is None
    assert describe_api_error(TimeoutError()) == "TimeoutError"
    assert describe_api_error(OSError("connection refused")) == "OSError: connection refused"


def test_a_failed_write_is_described_by_the_store_or_the_api() -> None:
    store_down = StoreError("PostgreSQL connection failed: connection refused")
    assert describe_failure(store_down) == "PostgreSQL connection failed: connection refused"
    body = json.dumps({"kind": "Status", "message": "too many requests"})
    assert describe_failure(api_error(429, "Too Many Requests", body)) == (
        "HTTP 429 Too Many Requests: too many requests"
    )
