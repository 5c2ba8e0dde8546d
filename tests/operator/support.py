"""Fakes shared by the operator's tests: real implementations of the protocols the operator's
logic takes (Secret versions, status patches, finalizers, a clock), and the services built on
them as the startup handler builds the real ones."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from kubernetes.client.exceptions import ApiException

from kubebots.operator.events import BotEvent
from kubebots.operator.kube import FINALIZER
from kubebots.operator.reconcile import BotRef, SecretMissingError
from kubebots.operator.services import OperatorMemo, OperatorServices, assemble
from kubebots.operator.settings import OperatorSettings
from kubebots.runtime.configstore import MemoryConfigStore, StoreError

#: A valid Bot spec that needs no Secret.
SPEC = {"llm": {"provider": "echo"}, "systemPrompt": "hi"}


def secret_spec(secret: str, key: str = "k") -> dict[str, Any]:
    """A Bot spec whose API key is ``key`` of the Secret ``secret``."""
    return {
        "llm": {
            "provider": "openai",
            "model": "m",
            "baseUrl": "http://llm:8000/v1",
            "apiKeySecretRef": {"name": secret, "key": key},
        }
    }


def tool_secret_spec(
    llm_secret: str | None, tool_secret: str, key: str = "token", fallback: str | None = None
) -> dict[str, Any]:
    """A Bot spec with an HTTP tool whose ``Authorization`` header is ``key`` of the Secret
    ``tool_secret``; its API key from the Secret ``llm_secret`` (key ``k``) when given, with
    one fallback whose key is ``fallback-key`` of the Secret ``fallback`` when given."""
    llm: dict[str, Any] = (
        secret_spec(llm_secret)["llm"] if llm_secret else {"provider": "openai", "model": "m"}
    )
    llm.setdefault("baseUrl", "http://llm:8000/v1")
    if fallback is not None:
        ref = {"name": fallback, "key": "fallback-key"}
        llm["fallbacks"] = [{"model": "m2", "apiKeySecretRef": ref}]
    header = {"name": "Authorization", "secretRef": {"name": tool_secret, "key": key}}
    tool = {"name": "lookup", "url": "http://tools:8080/lookup", "headers": [header]}
    return {"llm": llm, "tools": {"http": [tool]}}


class Clock:
    """Monotonic seconds the test moves, and the matching wall clock for store heartbeats."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=self.now)


class FakeApiCheck:
    """An API round trip for :class:`~kubebots.operator.liveness.ApiLiveness`: answers, or
    fails with ``error``; counts the calls."""

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error


class FakeSecretVersions:
    """Secrets by (namespace, name) with their resourceVersion and keys; answers like
    :class:`kubebots.operator.kube.KubeSecretVersions` (a missing Secret or key raises)."""

    def __init__(self) -> None:
        self.held: dict[tuple[str, str], tuple[str, frozenset[str]]] = {}
        self.reads = 0

    def put(self, namespace: str, name: str, version: str, *keys: str) -> None:
        self.held[(namespace, name)] = (version, frozenset(keys))

    async def version(self, namespace: str, name: str, key: str) -> str:
        self.reads += 1
        held = self.held.get((namespace, name))
        if held is None:
            raise SecretMissingError(f"Secret '{name}' not found in namespace '{namespace}'")
        version, keys = held
        if key not in keys:
            raise SecretMissingError(f"Secret '{name}' has no key '{key}'")
        return version


class Sent(NamedTuple):
    namespace: str
    name: str
    status: dict[str, Any]


class FakeStatusPatcher:
    """Records status patches in order; tracks how many run at once; a Bot in ``fail`` raises,
    one in ``gone`` answers 404."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.in_flight = self.max_in_flight = 0
        self.fail: set[str] = set()
        self.gone: set[str] = set()

    async def patch(self, namespace: str, name: str, status: Any) -> bool:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)
            if name in self.fail:
                raise RuntimeError("HTTP 500")
            if name in self.gone:
                return False
            self.sent.append(Sent(namespace, name, dict(status)))
            return True
        finally:
            self.in_flight -= 1

    def last(self) -> dict[str, Any]:
        return self.sent[-1].status

    def ready(self, name: str) -> str:
        """The reason of the Ready condition last patched for ``name``."""
        status = [s.status for s in self.sent if s.name == name][-1]
        return str(next(c["reason"] for c in status["conditions"] if c["type"] == "Ready"))


class RecordedEvents:
    """Records the events posted on each Bot, in order (an :class:`EventPoster`)."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, BotEvent]] = []
        self.binds = 0

    def bind(self) -> None:
        self.binds += 1

    def post(self, ref: BotRef, events: Sequence[BotEvent]) -> None:
        self.posted += [(ref.name, e) for e in events]

    def reasons(self, name: str) -> list[str]:
        return [e.reason for n, e in self.posted if n == name]


class FakeFinalizers:
    """Each Bot's finalizers as the API would hold them after our JSON patches; ``stale`` names
    Bots whose object changed since the event (the test of the patch fails)."""

    def __init__(self) -> None:
        self.held: dict[str, list[str]] = {}
        self.stale: set[str] = set()
        self.calls = 0

    async def add(self, namespace: str, name: str, meta: Any) -> bool:
        self.calls += 1
        if name in self.stale:
            return False
        self.held[name] = [*(meta.get("finalizers") or []), FINALIZER]
        return True

    async def remove(self, namespace: str, name: str, meta: Any) -> bool:
        self.calls += 1
        if name in self.stale:
            return False
        self.held[name] = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        return True


class FlakyStore(MemoryConfigStore):
    """A memory store that refuses every call while ``down``, like a PostgreSQL outage."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise StoreError("PostgreSQL connection failed: connection refused")

    async def put(self, bot_id: str, config: Any, **kw: Any) -> int:
        self._check()
        return await super().put(bot_id, config, **kw)

    async def delete(self, bot_id: str) -> int:
        self._check()
        return await super().delete(bot_id)

    async def delete_many(self, bot_ids: Any) -> int:
        self._check()
        return await super().delete_many(bot_ids)

    async def get(self, bot_id: str) -> Any:
        self._check()
        return await super().get(bot_id)

    async def list(self) -> Any:
        self._check()
        return await super().list()


@dataclass
class Operator:
    """The memo kopf passes the handlers, on fakes the test can look into."""

    memo: OperatorMemo
    services: OperatorServices
    secrets: FakeSecretVersions
    patcher: FakeStatusPatcher
    finalizers: FakeFinalizers
    events: RecordedEvents


def operator(
    store: MemoryConfigStore,
    secrets: FakeSecretVersions | None = None,
    *,
    settings: OperatorSettings | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> Operator:
    """The services the startup handler would make, on ``store`` and the fakes (``wall``:
    the unix clock rollout steps are timed by)."""
    secrets, patcher, finalizers = (
        secrets or FakeSecretVersions(),
        FakeStatusPatcher(),
        FakeFinalizers(),
    )
    settings = settings or OperatorSettings(
        ready_wait=0.2, replica_max_age=60, reports_ttl=0, retry_interval=0.01
    )
    events = RecordedEvents()
    services = assemble(
        settings,
        store,
        secrets=secrets,
        finalizers=finalizers,
        patcher=patcher,
        clock=clock,
        events=events,
        wall=wall,
    )
    memo = OperatorMemo(services=services)
    return Operator(memo, services, secrets, patcher, finalizers, events)


# -- the Kubernetes API ------------------------------------------------------------------------


def api_error(status: int, reason: str, body: dict[str, Any] | str | None = None) -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = body if isinstance(body, str) else json.dumps(body or {"kind": "Status"})
    return exc


class FakeCoreV1Api:
    """The CoreV1Api methods the operator calls on Secrets (read, create), answering as the
    apiserver does."""

    def __init__(self) -> None:
        self.stored: dict[tuple[str, str], Any] = {}

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        if (namespace, name) not in self.stored:
            raise api_error(404, "Not Found")
        return self.stored[(namespace, name)]

    def create_namespaced_secret(self, namespace: str, body: Any) -> Any:
        name = body.metadata.name
        if (namespace, name) in self.stored:
            raise api_error(409, "Conflict")
        data = {k: base64.b64encode(v.encode()).decode() for k, v in body.string_data.items()}
        body.data, body.string_data = data, None
        self.stored[(namespace, name)] = body
        return body


class FakeSecrets:
    """Secrets in memory, answering as the apiserver does; ``before_create`` runs inside each
    create before it takes effect (a concurrent writer)."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, bytes]] = {}
        self.labels: dict[tuple[str, str], dict[str, str]] = {}
        self.calls: list[tuple[str, str]] = []
        self.before_create: Callable[[str, str], None] | None = None

    def read(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        self.calls.append(("read", name))
        found = self.secrets.get((namespace, name))
        return None if found is None else dict(found)

    def create(
        self, namespace: str, name: str, data: Mapping[str, str], labels: Mapping[str, str]
    ) -> bool:
        self.calls.append(("create", name))
        if self.before_create is not None:
            self.before_create(namespace, name)
        if (namespace, name) in self.secrets:
            return False
        self.secrets[(namespace, name)] = {k: v.encode() for k, v in data.items()}
        self.labels[(namespace, name)] = dict(labels)
        return True

    def text(self, name: str, key: str, namespace: str = "kubebots-system") -> str:
        return self.secrets[(namespace, name)][key].decode()
