"""``kubebots init-credentials``: the Secrets of ``deploy/quickstart``, generated in the cluster.

Creates, in one namespace, each of these Secrets that does not exist yet, with random values
(:mod:`secrets`), and never overwrites one that does:

* ``kubebots-postgres``: ``password``, the PostgreSQL password (the quickstart's StatefulSet
  initialises its database with it);
* ``kubebots-store``: ``url`` and ``conversations-url``, both
  ``postgresql://kubebots:PASSWORD@kubebots-postgres.NAMESPACE.svc:5432/kubebots``, with the
  password of ``kubebots-postgres`` (also when that Secret existed before);
* ``kubebots-api-keys``: ``admin-key`` (KUBEBOTS_ADMIN_KEY of the runtime), ``keys.yaml`` (one
  client, ``quickstart``, holding only the SHA-256 digest of its key) and ``client-key`` (that
  key, for the user to read; the runtime mounts ``keys.yaml`` alone).

Re-running it changes nothing, and two runs at once are fine: a create answered 409 means
someone else created that Secret first, and its values are used. It prints what it created or
kept, never a value. Registered through the ``kubebots.commands`` entry point group, so the
runtime never imports it.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import secrets
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TextIO
from urllib.parse import quote

import yaml

from kubebots.runtime.auth import hash_key

from .kube import describe_api_error

POSTGRES_SECRET = "kubebots-postgres"
STORE_SECRET = "kubebots-store"
API_KEYS_SECRET = "kubebots-api-keys"
#: The PostgreSQL role and database of deploy/quickstart/postgres.yaml, and its Service.
POSTGRES_USER = "kubebots"
POSTGRES_DB = "kubebots"
POSTGRES_SERVICE = "kubebots-postgres"
POSTGRES_PORT = 5432
#: The client whose key ``client-key`` holds.
CLIENT_ID = "quickstart"
LABELS: Mapping[str, str] = {
    "app.kubernetes.io/part-of": "kubebots",
    "app.kubernetes.io/managed-by": "kubebots-init-credentials",
}


class CredentialsError(Exception):
    """An existing Secret cannot be used (e.g. it lacks a key); nothing was overwritten."""


class SecretsClient(Protocol):
    """The two Secret calls the command makes."""

    def read(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        """The Secret's decoded data, or ``None`` when it does not exist."""
        ...

    def create(
        self, namespace: str, name: str, data: Mapping[str, str], labels: Mapping[str, str]
    ) -> bool:
        """Create the Secret; ``False`` when one of that name exists already (HTTP 409)."""
        ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one Secret: ``keys`` are the names of the keys it was created with."""

    name: str
    created: bool
    keys: tuple[str, ...] = ()


def store_url(password: str, namespace: str) -> str:
    """The quickstart PostgreSQL's URL with ``password`` (percent-encoded)."""
    host = f"{POSTGRES_SERVICE}.{namespace}.svc"
    return (
        f"postgresql://{POSTGRES_USER}:{quote(password, safe='')}@{host}:{POSTGRES_PORT}/"
        f"{POSTGRES_DB}"
    )


def keys_file(client_key: str) -> str:
    """``keys.yaml`` (kubebots.runtime.auth's format) with one client holding ``client_key``'s
    digest: every bot, no limits."""
    document = {"clients": [{"clientId": CLIENT_ID, "keys": [hash_key(client_key)]}]}
    return yaml.safe_dump(document, sort_keys=False)


def _ensure(
    client: SecretsClient,
    namespace: str,
    name: str,
    make: Callable[[], dict[str, str]],
) -> tuple[Mapping[str, bytes], Outcome]:
    """The Secret ``name``'s data: as it exists, else as created from ``make()``."""
    existing = client.read(namespace, name)
    if existing is not None:
        return existing, Outcome(name, created=False)
    data = make()
    if client.create(namespace, name, data, LABELS):
        encoded = {key: value.encode("utf-8") for key, value in data.items()}
        return encoded, Outcome(name, created=True, keys=tuple(data))
    # 409: created by someone else between our read and our create. Theirs wins.
    existing = client.read(namespace, name)
    if existing is None:
        raise CredentialsError(f"Secret {namespace}/{name} was created and deleted meanwhile")
    return existing, Outcome(name, created=False)


def _password(data: Mapping[str, bytes], namespace: str) -> str:
    raw = data.get("password")
    if not raw:
        raise CredentialsError(
            f"Secret {namespace}/{POSTGRES_SECRET} exists without a 'password' key: add it, or "
            "delete the Secret to have one generated"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # holds the bytes: not chained
        reason = "is not UTF-8"
    raise CredentialsError(f"Secret {namespace}/{POSTGRES_SECRET}: 'password' {reason}")


def init_credentials(
    client: SecretsClient,
    namespace: str,
    *,
    token: Callable[[], str] = lambda: secrets.token_urlsafe(32),
) -> list[Outcome]:
    """Create the missing Secrets (module docstring) in ``namespace``; never overwrite one.

    ``token`` makes each random value. Raises :class:`CredentialsError` when an existing
    ``kubebots-postgres`` has no usable ``password`` (the other Secrets are then not touched).
    """
    postgres, postgres_outcome = _ensure(
        client, namespace, POSTGRES_SECRET, lambda: {"password": token()}
    )
    url = store_url(_password(postgres, namespace), namespace)
    _, store_outcome = _ensure(
        client, namespace, STORE_SECRET, lambda: {"url": url, "conversations-url": url}
    )

    def api_keys() -> dict[str, str]:
        client_key = token()
        return {"admin-key": token(), "keys.yaml": keys_file(client_key), "client-key": client_key}

    _, keys_outcome = _ensure(client, namespace, API_KEYS_SECRET, api_keys)
    return [postgres_outcome, store_outcome, keys_outcome]


def describe(outcome: Outcome, namespace: str) -> str:
    """One line about ``outcome``: names only, never a value."""
    if outcome.created:
        return f"Secret {namespace}/{outcome.name}: created (keys: {', '.join(outcome.keys)})"
    return f"Secret {namespace}/{outcome.name}: exists, kept as it is"


class KubeSecrets:
    """:class:`SecretsClient` on the official client's ``CoreV1Api``."""

    def __init__(self, api: Any) -> None:
        self._api = api

    def read(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            secret: Any = self._api.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        data: Mapping[str, str] = secret.data or {}
        try:
            return {key: base64.b64decode(value, validate=True) for key, value in data.items()}
        except binascii.Error:
            reason = "is not base64"
        raise CredentialsError(f"Secret {namespace}/{name}: data {reason}")

    def create(
        self, namespace: str, name: str, data: Mapping[str, str], labels: Mapping[str, str]
    ) -> bool:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        body = client.V1Secret(
            api_version="v1",
            kind="Secret",
            metadata=client.V1ObjectMeta(name=name, namespace=namespace, labels=dict(labels)),
            type="Opaque",
            string_data=dict(data),
        )
        try:
            self._api.create_namespaced_secret(namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True


def _connect() -> SecretsClient:
    """In-cluster credentials in a pod, else the kubeconfig (as the operator does)."""
    from kubernetes import client

    from .kube import load_client_config

    load_client_config()
    return KubeSecrets(client.CoreV1Api())


def add_parser(sub: Any) -> None:
    """Register ``kubebots init-credentials`` (the ``kubebots.commands`` entry point)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "init-credentials",
        help="create the quickstart's Secrets (PostgreSQL, store URL, API keys) when missing",
        description=(
            "Create the Secrets kubebots-postgres, kubebots-store and kubebots-api-keys in "
            "NAMESPACE with random values, each only if it does not exist. Prints what it "
            "created, never a value."
        ),
    )
    p.add_argument("-n", "--namespace", required=True, help="where the Secrets go")
    p.set_defaults(handler=run_init_credentials)


def run_init_credentials(
    args: argparse.Namespace,
    env: Mapping[str, str],
    *,
    connect: Callable[[], SecretsClient] = _connect,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """The command: 0 when every Secret exists afterwards, 1 otherwise (the reason on stderr)."""
    namespace: str = args.namespace
    try:
        outcomes = init_credentials(connect(), namespace)
    except CredentialsError as exc:
        print(f"init-credentials: {exc}", file=err or sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - reported in one line, exit 1: the Job retries
        print(f"init-credentials: {describe_api_error(exc)}", file=err or sys.stderr)
        return 1
    for outcome in outcomes:
        print(describe(outcome, namespace), file=out or sys.stdout)
    return 0
