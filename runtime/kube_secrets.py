"""API keys from Kubernetes Secrets, read through the API when a bot is built.

A Bot's ``apiKeySecretRef`` names a Secret in the Bot's own namespace (the namespace part of
its id ``NAMESPACE:NAME``). The value is read at build time only and never stored or logged;
when the Secret rotates, the operator bumps the bot's store entry, so replicas rebuild the bot
and read the new value without a restart.
"""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

from .errors import ConfigurationError
from .kube_config import ClusterAccess
from .schema import SecretKeyRef, split_bot_id


class KubernetesSecretResolver:
    """Reads Secret keys with the official client, connected as ``access`` says (a pod's
    service account through the service host/port the kubelet injects, else a kubeconfig)."""

    def __init__(self, api: Any | None = None, *, access: ClusterAccess | None = None) -> None:
        self._api = api
        self._access = access

    def _client(self) -> Any:
        if self._api is None:
            from kubernetes import client

            access = self._access or ClusterAccess(os.environ)
            self._api = client.CoreV1Api(access.api_client())
        return self._api

    def _read(self, namespace: str, ref: SecretKeyRef) -> str | None:
        from kubernetes.client.exceptions import ApiException

        try:
            secret = self._client().read_namespaced_secret(ref.name, namespace)
        except ApiException as exc:
            if exc.status in (403, 404):
                return None
            raise
        raw = (secret.data or {}).get(ref.key)
        return base64.b64decode(raw).decode("utf-8").strip() if raw is not None else None

    async def get(self, ref: SecretKeyRef, *, bot_id: str) -> str:
        parts = split_bot_id(bot_id)
        namespace = parts[0] if parts else "default"
        value = await asyncio.to_thread(self._read, namespace, ref)
        if value is None:
            reason = f"Secret '{ref.name}' key '{ref.key}' is missing or not readable"
            raise ConfigurationError(
                f"bot '{bot_id}': {reason}", errors=[("llm.apiKeySecretRef", reason)], bot_id=bot_id
            )
        return value
