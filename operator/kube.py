"""The few Kubernetes API reads the operator does beside kopf's watches (official client)."""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from kubebots.runtime.schema import API_GROUP, API_VERSION, PLURAL, bot_id_for

from .reconcile import SecretMissingError


def load_client_config() -> None:
    """In-cluster credentials when in a pod, else the kubeconfig (as kopf does)."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]


class KubeSecretVersions:
    """Secret resourceVersions via the API. Values are read by the client, never kept."""

    def __init__(self, api: client.CoreV1Api | None = None) -> None:
        self._api = api or client.CoreV1Api()

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


def _list_bot_ids(namespaces: list[str] | None) -> set[str]:
    api = client.CustomObjectsApi()
    items: list[dict[str, Any]] = []
    if namespaces is None:
        found: Any = api.list_cluster_custom_object(API_GROUP, API_VERSION, PLURAL)
        items = found["items"]
    else:
        for ns in namespaces:
            listed: Any = api.list_namespaced_custom_object(API_GROUP, API_VERSION, ns, PLURAL)
            items += listed["items"]
    return {bot_id_for(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items}


async def list_bot_ids(namespaces: list[str] | None) -> set[str]:
    """Ids of every Bot in the watched namespaces (``None``: the whole cluster)."""
    return await asyncio.to_thread(_list_bot_ids, namespaces)
