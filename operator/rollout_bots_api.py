"""The Kubernetes API calls of ``kubebots rollout``: reading a Bot and annotating it.

:class:`BotsApi` is the shape the command needs (tests give it a real apiserver);
:class:`KubeBotsApi` is it on the official client, reached as the operator reaches the API
(:class:`ClusterAccess`: in a pod its service account, else the kubeconfig).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from kubernetes.client.exceptions import ApiException

from kubebots.runtime.kube_config import ClusterAccess
from kubebots.runtime.schema import API_GROUP, API_VERSION, PLURAL, split_bot_id

from .kube import describe_api_error, status_kind

#: Seconds one API call may take (a hung API must not hang the command).
REQUEST_TIMEOUT: Final = 10.0


class RolloutCliError(Exception):
    """The command cannot do what was asked; the message says why (never a secret)."""


class BotsApi(Protocol):
    """The two API calls the command makes on Bots."""

    def get(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The Bot as the API returns it; ``None`` when there is no such Bot."""
        ...

    def annotate(self, namespace: str, name: str, key: str, value: str) -> bool:
        """Merge-patch one annotation of the Bot; ``False`` when there is no such Bot."""
        ...


@dataclass(frozen=True, slots=True)
class BotRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def parse_ref(text: str, namespace: str | None) -> BotRef:
    """``NAME``, ``NAMESPACE/NAME`` or ``NAMESPACE:NAME`` (the bot id) as a Bot reference; a
    bare name is in ``namespace`` (``-n``), else in ``default``."""
    if "/" in text or ":" in text:
        parts = split_bot_id(text.replace("/", ":", 1))
        if parts is None or ":" in parts[1] or "/" in parts[1]:
            raise RolloutCliError(f"not a Bot: {text!r} (NAME, NAMESPACE/NAME or NAMESPACE:NAME)")
        if namespace is not None and namespace != parts[0]:
            raise RolloutCliError(f"{text!r} is in namespace {parts[0]!r}, not {namespace!r}")
        return BotRef(*parts)
    if not text:
        raise RolloutCliError("name a Bot: NAME, NAMESPACE/NAME or NAMESPACE:NAME")
    return BotRef(namespace or "default", text)


class KubeBotsApi:
    """:class:`BotsApi` on the official client's ``CustomObjectsApi``; every call bounded by
    :data:`REQUEST_TIMEOUT`."""

    def __init__(self, custom: Any) -> None:
        self._custom = custom

    def get(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        try:
            bot: Mapping[str, Any] = self._custom.get_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, name, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if _bot_missing(exc):
                return None
            raise
        return bot

    def annotate(self, namespace: str, name: str, key: str, value: str) -> bool:
        try:
            self._custom.patch_namespaced_custom_object(
                API_GROUP,
                API_VERSION,
                namespace,
                PLURAL,
                name,
                {"metadata": {"annotations": {key: value}}},
                _content_type="application/merge-patch+json",
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if _bot_missing(exc):
                return False
            raise
        return True


def _bot_missing(exc: ApiException) -> bool:
    # The Bot's own 404 names its kind; a resource not served (no CRD) is a bare 404 page.
    return exc.status == 404 and status_kind(exc) == PLURAL


def connect(env: Mapping[str, str]) -> BotsApi:
    """In-cluster credentials in a pod, else the kubeconfig (:class:`ClusterAccess`)."""
    from kubernetes import client

    return KubeBotsApi(client.CustomObjectsApi(ClusterAccess(env).api_client()))


def api_failure(exc: BaseException, ref: BotRef, verb: str) -> str:
    why = describe_api_error(exc)
    if isinstance(exc, ApiException) and exc.status == 403:
        return f"Bot {ref}: {why} (grant `{verb}` on {PLURAL}.{API_GROUP} in {ref.namespace})"
    if isinstance(exc, ApiException) and exc.status == 404:
        return f"Bot {ref}: {why} (is the CustomResourceDefinition {PLURAL}.{API_GROUP} installed?)"
    return f"Bot {ref}: {why}"
