"""The few Kubernetes API calls the operator makes beside kopf's watches (official client).

Every client is built on the :class:`~kubebots.runtime.kube_config.ClusterAccess` kopf logs in
with (never the official client's global default configuration).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubebots.runtime.configstore import StoreError
from kubebots.runtime.kube_config import ClusterAccess
from kubebots.runtime.schema import API_GROUP, API_VERSION, PLURAL, bot_id_for

from .reconcile import SecretMissingError

#: Our finalizer: a Bot holds it while the config store may hold its entry.
FINALIZER = "kubebots.io/finalizer"


def load_client_config(env: Mapping[str, str] | None = None) -> None:
    """Make the official client's global default configuration the one of
    :class:`ClusterAccess` (a pod's service host/port and token, else the kubeconfig).

    For one-shot commands (``kubebots init-credentials``); the operator passes an ApiClient.
    """
    access = ClusterAccess(os.environ if env is None else env)
    client.Configuration.set_default(access.configuration())


def describe_api_error(exc: BaseException) -> str:
    """A failed call in one line: ``HTTP 403 Forbidden: <the API's own message>`` (it names the
    verb and the resource, never a Secret's data), else the error's type and text."""
    if isinstance(exc, ApiException):
        head = f"HTTP {exc.status} {exc.reason or ''}".rstrip()
        message = _status_body(exc).get("message")
        return f"{head}: {message}" if message else head
    return (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)[:300]


def describe_failure(exc: BaseException) -> str:
    """Why a write did not happen, in one line: the config store's own message (it never quotes
    the URL's password), else the failed API call's (:func:`describe_api_error`)."""
    return exc.message if isinstance(exc, StoreError) else describe_api_error(exc)


def status_kind(exc: ApiException) -> str | None:
    """``details.kind`` of the apiserver's Status body (what was not found), if any."""
    details = _status_body(exc).get("details")
    kind = details.get("kind") if isinstance(details, dict) else None
    return str(kind) if kind else None


def _status_body(exc: ApiException) -> dict[str, Any]:
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def secret_keys(secret: Mapping[str, Any]) -> frozenset[str]:
    """The keys a Secret object (a watch event's body) holds."""
    return frozenset(secret.get("data") or {}) | frozenset(secret.get("stringData") or {})


class KubeSecretVersions:
    """Secret resourceVersions via the API. Values are read by the client, never kept."""

    def __init__(self, api: client.CoreV1Api) -> None:
        self._api = api

    def _read(self, namespace: str, name: str, key: str) -> str:
        try:
            secret: Any = self._api.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise SecretMissingError(
                    f"Secret '{name}' not found in namespace '{namespace}'"
                ) from None
            raise
        if key not in (secret.data or {}) and key not in (secret.string_data or {}):
            raise SecretMissingError(f"Secret '{name}' has no key '{key}'")
        return str(secret.metadata.resource_version)

    async def version(self, namespace: str, name: str, key: str) -> str:
        return await asyncio.to_thread(self._read, namespace, name, key)


#: Bots per page of the start-up listing: the operator never holds more than one page of
#: objects (10,000 Bots in one response would be tens of MiB of JSON at once).
LIST_PAGE = 500


def _list_bot_ids(api: client.CustomObjectsApi, namespaces: list[str] | None) -> set[str]:
    ids: set[str] = set()
    for ns in namespaces if namespaces is not None else [None]:
        token: str | None = None
        while True:
            page: Any = (
                api.list_cluster_custom_object(
                    API_GROUP, API_VERSION, PLURAL, limit=LIST_PAGE, _continue=token
                )
                if ns is None
                else api.list_namespaced_custom_object(
                    API_GROUP, API_VERSION, ns, PLURAL, limit=LIST_PAGE, _continue=token
                )
            )
            for item in page["items"]:
                ids.add(bot_id_for(item["metadata"]["namespace"], item["metadata"]["name"]))
            token = page.get("metadata", {}).get("continue") or None
            if token is None:
                break
    return ids


class KubeStatusPatcher:
    """Bot statuses through the status subresource: a merge patch of ``status`` only."""

    def __init__(self, api: client.CustomObjectsApi) -> None:
        self._api = api

    def _patch(self, namespace: str, name: str, status: Mapping[str, Any]) -> bool:
        try:
            self._api.patch_namespaced_custom_object_status(
                API_GROUP,
                API_VERSION,
                namespace,
                PLURAL,
                name,
                {"status": dict(status)},
                _content_type="application/merge-patch+json",
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def patch(self, namespace: str, name: str, status: Mapping[str, Any]) -> bool:
        return await asyncio.to_thread(self._patch, namespace, name, status)


class KubeFinalizers:
    """Our finalizer on a Bot, added or removed by a JSON patch that tests what it changes (the
    resourceVersion, or the finalizer at its index): a concurrent change to the list makes the
    patch fail (422/409) and the next event retries it, so another controller's finalizer is
    never lost. kopf's own way, a diff of the whole object per patch, cost ~2 ms of CPU a Bot."""

    def __init__(self, api: client.CustomObjectsApi, finalizer: str) -> None:
        self._api = api
        self.finalizer = finalizer

    def _patch(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> bool:
        try:
            self._api.patch_namespaced_custom_object(
                API_GROUP,
                API_VERSION,
                namespace,
                PLURAL,
                name,
                ops,
                _content_type="application/json-patch+json",
            )
        except ApiException as exc:
            if exc.status in (404, 409, 422):  # gone, or changed since: the next event retries
                return False
            raise
        return True

    async def add(self, namespace: str, name: str, meta: Mapping[str, Any]) -> bool:
        """Add ours to the finalizers ``meta`` shows (if the object still has that version)."""
        current = list(meta.get("finalizers") or [])
        test = {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]}
        add = (
            {"op": "add", "path": "/metadata/finalizers/-", "value": self.finalizer}
            if current
            else {"op": "add", "path": "/metadata/finalizers", "value": [self.finalizer]}
        )
        return await asyncio.to_thread(self._patch, namespace, name, [test, add])

    async def remove(self, namespace: str, name: str, meta: Mapping[str, Any]) -> bool:
        """Remove ours from the finalizers ``meta`` shows (if it is still at that index)."""
        current = list(meta.get("finalizers") or [])
        if self.finalizer not in current:
            return True
        path = f"/metadata/finalizers/{current.index(self.finalizer)}"
        ops = [
            {"op": "test", "path": path, "value": self.finalizer},
            {"op": "remove", "path": path},
        ]
        return await asyncio.to_thread(self._patch, namespace, name, ops)


async def list_bot_ids(api: client.CustomObjectsApi, namespaces: list[str] | None) -> set[str]:
    """Ids of every Bot in the watched namespaces (``None``: the whole cluster)."""
    return await asyncio.to_thread(_list_bot_ids, api, namespaces)
