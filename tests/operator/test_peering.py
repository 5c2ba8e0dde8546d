"""The peering object the operator makes before kopf starts (``--peering NAME``).

The API is a real implementation of :class:`PeeringApi` in memory that answers as the
apiserver does (Status bodies for a missing object or namespace, a bare 404 page for an
unknown resource, 403 without a verb, 409 for a race), with errors injected per call.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kubebots.operator.peering import (
    PeeringRef,
    PeeringSetupError,
    ensure_peering,
    peering_refs,
)

PLURALS = {"clusterkopfpeerings", "kopfpeerings"}


def not_found(kind: str, name: str) -> ApiException:
    exc = ApiException(status=404, reason="Not Found")
    exc.body = json.dumps(
        {"kind": "Status", "reason": "NotFound", "details": {"name": name, "kind": kind}}
    )
    return exc


def status(code: int, reason: str) -> ApiException:
    exc = ApiException(status=code, reason=reason)
    exc.body = json.dumps({"kind": "Status", "code": code})
    return exc


class Api:
    """Peering objects by (namespace, plural, name); ``verbs`` is what RBAC allows."""

    def __init__(self, *, crds: bool = True, namespaces: tuple[str, ...] = ("default",)) -> None:
        self.crds = crds
        self.namespaces = set(namespaces)
        self.objects: dict[tuple[str | None, str, str], Any] = {}
        self.verbs = {"get", "create"}
        self.failures: list[Exception] = []  # raised by the next calls, in order
        self.race = False  # someone else creates the object between our get and create
        self.calls: list[str] = []

    def _check(self, verb: str, plural: str) -> None:
        self.calls.append(verb)
        if self.failures:
            raise self.failures.pop(0)
        if not self.crds or plural not in PLURALS:
            exc = ApiException(status=404, reason="Not Found")
            exc.body = "404 page not found\n"
            raise exc
        if verb not in self.verbs:
            raise status(403, "Forbidden")

    def _get(self, namespace: str | None, plural: str, name: str) -> Any:
        self._check("get", plural)
        try:
            return self.objects[(namespace, plural, name)]
        except KeyError:
            raise not_found(plural, name) from None

    def _create(self, namespace: str | None, plural: str, body: Any) -> Any:
        self._check("create", plural)
        if namespace is not None and namespace not in self.namespaces:
            raise not_found("namespaces", namespace)
        key = (namespace, plural, body["metadata"]["name"])
        if self.race or key in self.objects:
            raise status(409, "Conflict")
        self.objects[key] = body
        return body

    def _bounded(self, group: str, version: str, timeout: float) -> None:
        assert (group, version) == ("kopf.dev", "v1")
        assert timeout == 10.0, "every call is bounded"

    def get_cluster_custom_object(
        self, group: str, version: str, plural: str, name: str, *, _request_timeout: float
    ) -> Any:
        self._bounded(group, version, _request_timeout)
        return self._get(None, plural, name)

    def create_cluster_custom_object(
        self, group: str, version: str, plural: str, body: Any, *, _request_timeout: float
    ) -> Any:
        self._bounded(group, version, _request_timeout)
        return self._create(None, plural, body)

    def get_namespaced_custom_object(
        self,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        name: str,
        *,
        _request_timeout: float,
    ) -> Any:
        self._bounded(group, version, _request_timeout)
        return self._get(namespace, plural, name)

    def create_namespaced_custom_object(
        self,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        body: Any,
        *,
        _request_timeout: float,
    ) -> Any:
        self._bounded(group, version, _request_timeout)
        return self._create(namespace, plural, body)


class Sleeps:
    """A clock that only moves when slept on."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def ensure(api: Api, refs: list[PeeringRef], give_up_after: float = 60.0) -> list[PeeringRef]:
    t = Sleeps()
    return ensure_peering(api, refs, give_up_after=give_up_after, sleep=t.sleep, clock=t.clock)


def test_all_namespaces_creates_the_cluster_peering_once() -> None:
    api = Api()
    refs = peering_refs("kubebots", None)
    assert ensure(api, refs) == [PeeringRef("kubebots")]
    body = api.objects[(None, "clusterkopfpeerings", "kubebots")]
    assert body["apiVersion"] == "kopf.dev/v1"
    assert body["kind"] == "ClusterKopfPeering"
    assert body["metadata"]["name"] == "kubebots"
    assert "namespace" not in body["metadata"]
    # a restart finds it and leaves it alone (a read, no create)
    api.calls.clear()
    assert ensure(api, refs) == []
    assert api.calls == ["get"]


def test_an_existing_peering_needs_no_create_verb() -> None:
    """Where an administrator made the object, read and patch rights are enough."""
    api = Api()
    api.objects[(None, "clusterkopfpeerings", "kubebots")] = {"metadata": {"name": "kubebots"}}
    api.verbs = {"get"}
    assert ensure(api, peering_refs("kubebots", None)) == []


def test_namespaces_get_a_kopf_peering_each() -> None:
    api = Api(namespaces=("a", "b"))
    created = ensure(api, peering_refs("kubebots", ["a", "b"]))
    assert created == [PeeringRef("kubebots", "a"), PeeringRef("kubebots", "b")]
    body = api.objects[("b", "kopfpeerings", "kubebots")]
    assert (body["kind"], body["metadata"]["namespace"]) == ("KopfPeering", "b")


def test_namespace_patterns_get_no_object() -> None:
    assert peering_refs("kubebots", ["team-*", "prod"]) == [PeeringRef("kubebots", "prod")]


def test_a_concurrent_create_is_fine() -> None:
    api = Api()
    api.race = True
    assert ensure(api, peering_refs("kubebots", None)) == []


def test_a_missing_create_verb_names_the_verb_resource_and_group() -> None:
    api = Api()
    api.verbs = {"get"}
    with pytest.raises(PeeringSetupError) as caught:
        ensure(api, peering_refs("kubebots", None))
    message = str(caught.value)
    assert "lacks the verb 'create' on 'clusterkopfpeerings' in API group 'kopf.dev'" in message
    assert "ClusterRole" in message and "deploy/operator/rbac.yaml" in message


def test_a_missing_get_verb_is_named_too() -> None:
    api = Api()
    api.verbs = set()
    with pytest.raises(PeeringSetupError, match="lacks the verb 'get' on 'clusterkopfpeerings'"):
        ensure(api, peering_refs("kubebots", None))


def test_a_missing_peering_crd_says_to_apply_deploy() -> None:
    with pytest.raises(PeeringSetupError) as caught:
        ensure(Api(crds=False), peering_refs("kubebots", None))
    message = str(caught.value)
    assert "'clusterkopfpeerings.kopf.dev' is not installed" in message
    assert "deploy/peering/crds.yaml" in message


def test_a_missing_namespace_is_named() -> None:
    with pytest.raises(PeeringSetupError, match="namespace 'gone' does not exist"):
        ensure(Api(namespaces=("default",)), peering_refs("kubebots", ["gone"]))


def test_api_outages_are_retried_with_backoff() -> None:
    api = Api()
    api.failures = [
        ConnectionRefusedError(111, "Connection refused"),
        status(503, "Service Unavailable"),
        status(429, "Too Many Requests"),
    ]
    t = Sleeps()
    created = ensure_peering(
        api, peering_refs("kubebots", None), give_up_after=60, sleep=t.sleep, clock=t.clock
    )
    assert created == [PeeringRef("kubebots")]
    assert t.slept == [0.5, 1.0, 2.0]


def test_an_api_down_past_the_deadline_is_a_clear_error() -> None:
    api = Api()
    api.failures = [ConnectionRefusedError(111, "Connection refused")] * 100
    with pytest.raises(PeeringSetupError, match="cannot make sure the ClusterKopfPeering"):
        ensure(api, peering_refs("kubebots", None), give_up_after=10)


def test_other_api_errors_are_not_retried() -> None:
    api = Api()
    api.failures = [status(422, "Unprocessable Entity")]
    with pytest.raises(PeeringSetupError, match="HTTP 422 Unprocessable Entity"):
        ensure(api, peering_refs("kubebots", None))
    assert api.calls == ["get"]
