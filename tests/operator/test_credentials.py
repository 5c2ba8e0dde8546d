"""`kubebots init-credentials`: the quickstart's Secrets, created once and never overwritten.

The logic runs against an in-memory fake of the two Secret calls it makes (the
``SecretsClient`` protocol); the adapter on the official client runs against a fake
``CoreV1Api`` that answers like the apiserver (404, 409, base64 data). Real pods run it in the
e2e scenarios.
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from kubebots.operator.credentials import (
    API_KEYS_SECRET,
    CLIENT_ID,
    LABELS,
    POSTGRES_SECRET,
    STORE_SECRET,
    CredentialsError,
    KubeSecrets,
    Outcome,
    SecretsClient,
    init_credentials,
    run_init_credentials,
    store_url,
)
from kubebots.runtime.auth import KeyRing
from kubebots.runtime.cli import build_parser

from .support import FakeCoreV1Api, FakeSecrets, api_error

NS = "kubebots-system"


def counter() -> Callable[[], str]:
    """Distinct, recognisable 'random' values."""
    numbers = itertools.count(1)
    return lambda: f"tok{next(numbers):03d}"


def test_the_protocol_is_what_the_fake_and_the_adapter_implement() -> None:
    fake: SecretsClient = FakeSecrets()
    adapter: SecretsClient = KubeSecrets(FakeCoreV1Api())
    assert fake and adapter


def test_a_fresh_namespace_gets_all_three_secrets_consistent_with_each_other() -> None:
    fake = FakeSecrets()
    outcomes = init_credentials(fake, NS)
    assert outcomes == [
        Outcome(POSTGRES_SECRET, created=True, keys=("password",)),
        Outcome(STORE_SECRET, created=True, keys=("url", "conversations-url")),
        Outcome(API_KEYS_SECRET, created=True, keys=("admin-key", "keys.yaml", "client-key")),
    ]
    password = fake.text(POSTGRES_SECRET, "password")
    assert len(password) >= 32
    # The store URL reaches the quickstart's PostgreSQL Service with that very password.
    url = urlsplit(fake.text(STORE_SECRET, "url"))
    assert (url.scheme, url.username, url.hostname, url.port, url.path) == (
        "postgresql",
        "kubebots",
        "kubebots-postgres.kubebots-system.svc",
        5432,
        "/kubebots",
    )
    assert unquote(url.password or "") == password
    assert fake.text(STORE_SECRET, "conversations-url") == fake.text(STORE_SECRET, "url")
    for key in fake.secrets:
        assert fake.labels[key] == dict(LABELS)


def test_the_generated_keys_file_is_what_the_runtime_loads(tmp_path: Path) -> None:
    fake = FakeSecrets()
    init_credentials(fake, NS)
    keys = tmp_path / "keys.yaml"
    keys.write_text(fake.text(API_KEYS_SECRET, "keys.yaml"))
    client_key = fake.text(API_KEYS_SECRET, "client-key")
    admin_key = fake.text(API_KEYS_SECRET, "admin-key")
    # Only the digest is in the file: the runtime never holds the plaintext client key.
    assert client_key not in keys.read_text()
    assert "sha256:" in keys.read_text()
    ring = KeyRing.load(keys, admin_key=admin_key)
    client = ring.authenticate(client_key)
    assert client is not None
    assert client.client_id == CLIENT_ID
    assert client.may_use("default:hello")  # every bot, no limits
    assert (client.admin, client.requests_per_minute, client.tokens_per_minute) == (
        False,
        None,
        None,
    )
    admin = ring.authenticate(admin_key)
    assert admin is not None and admin.admin
    assert ring.authenticate("tok999") is None
    assert len({client_key, admin_key, fake.text(POSTGRES_SECRET, "password")}) == 3


def test_a_rerun_changes_nothing_and_creates_nothing() -> None:
    fake = FakeSecrets()
    init_credentials(fake, NS)
    before = {k: dict(v) for k, v in fake.secrets.items()}
    fake.calls.clear()
    outcomes = init_credentials(fake, NS)
    assert outcomes == [
        Outcome(POSTGRES_SECRET, created=False),
        Outcome(STORE_SECRET, created=False),
        Outcome(API_KEYS_SECRET, created=False),
    ]
    assert fake.secrets == before
    assert [verb for verb, _ in fake.calls] == ["read", "read", "read"]


def test_an_existing_postgres_password_is_reused_for_the_store_url() -> None:
    fake = FakeSecrets()
    # A password of the user's own, with characters a URL must escape.
    fake.secrets[(NS, POSTGRES_SECRET)] = {"password": b"p@ss:w/rd %?#"}
    outcomes = init_credentials(fake, NS, token=counter())
    assert outcomes[0] == Outcome(POSTGRES_SECRET, created=False)
    assert fake.text(POSTGRES_SECRET, "password") == "p@ss:w/rd %?#"
    url = urlsplit(fake.text(STORE_SECRET, "url"))
    assert unquote(url.password or "") == "p@ss:w/rd %?#"
    assert url.hostname == "kubebots-postgres.kubebots-system.svc"


def test_existing_store_and_api_keys_are_never_overwritten() -> None:
    fake = FakeSecrets()
    fake.secrets[(NS, STORE_SECRET)] = {"url": b"postgresql://mine@db.example/kb"}
    fake.secrets[(NS, API_KEYS_SECRET)] = {"keys.yaml": b"clients: []\n"}
    outcomes = init_credentials(fake, NS)
    assert [(o.name, o.created) for o in outcomes] == [
        (POSTGRES_SECRET, True),
        (STORE_SECRET, False),
        (API_KEYS_SECRET, False),
    ]
    assert fake.secrets[(NS, STORE_SECRET)] == {"url": b"postgresql://mine@db.example/kb"}
    assert fake.secrets[(NS, API_KEYS_SECRET)] == {"keys.yaml": b"clients: []\n"}


def test_losing_a_create_race_uses_the_winners_secret() -> None:
    fake = FakeSecrets()

    def other_job(namespace: str, name: str) -> None:
        # Another run creates every Secret just before ours reaches the apiserver.
        if (namespace, name) not in fake.secrets:
            fake.secrets[(namespace, name)] = {
                POSTGRES_SECRET: {"password": b"winner"},
                STORE_SECRET: {"url": b"postgresql://kubebots:winner@x/kubebots"},
                API_KEYS_SECRET: {"keys.yaml": b"clients: []\n"},
            }[name]

    fake.before_create = other_job
    outcomes = init_credentials(fake, NS)
    assert all(not o.created for o in outcomes)
    assert fake.text(POSTGRES_SECRET, "password") == "winner"
    assert fake.text(STORE_SECRET, "url") == "postgresql://kubebots:winner@x/kubebots"
    # read (absent), create (409), read (theirs) for each.
    assert [verb for verb, _ in fake.calls] == ["read", "create", "read"] * 3


def test_two_runs_in_parallel_end_with_one_consistent_set() -> None:
    fake = FakeSecrets()
    first_done: list[list[Outcome]] = []

    def concurrent_run(namespace: str, name: str) -> None:
        # The first create of our run lets a whole other run go first.
        if not first_done:
            first_done.append([])
            first_done[0] = init_credentials(fake, namespace)

    fake.before_create = concurrent_run
    ours = init_credentials(fake, NS)
    assert all(o.created for o in first_done[0])
    assert all(not o.created for o in ours)
    password = fake.text(POSTGRES_SECRET, "password")
    assert unquote(urlsplit(fake.text(STORE_SECRET, "url")).password or "") == password


def test_a_postgres_secret_without_a_password_is_an_error_and_nothing_else_is_created() -> None:
    fake = FakeSecrets()
    fake.secrets[(NS, POSTGRES_SECRET)] = {"user": b"kubebots"}
    with pytest.raises(CredentialsError, match="'password'"):
        init_credentials(fake, NS)
    assert set(fake.secrets) == {(NS, POSTGRES_SECRET)}
    fake.secrets[(NS, POSTGRES_SECRET)] = {"password": b"\xff\xfe"}
    with pytest.raises(CredentialsError, match="not UTF-8") as caught:
        init_credentials(fake, NS)
    assert caught.value.__context__ is None and caught.value.__cause__ is None


def test_the_store_url_follows_the_namespace() -> None:
    fake = FakeSecrets()
    init_credentials(fake, "bots-prod")
    url = urlsplit(fake.text(STORE_SECRET, "url", namespace="bots-prod"))
    assert url.hostname == "kubebots-postgres.bots-prod.svc"
    assert (
        store_url("a b", "x") == "postgresql://kubebots:a%20b@kubebots-postgres.x.svc:5432/kubebots"
    )


# -- the command ---------------------------------------------------------------------------


def run(fake: SecretsClient, *argv: str) -> tuple[int, str, str]:
    parser = build_parser(load=["init-credentials"])
    args = parser.parse_args(["init-credentials", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = run_init_credentials(args, {}, connect=lambda: fake, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_the_command_is_registered_through_the_entry_point_group() -> None:
    parser = build_parser(load=["init-credentials"])
    args = parser.parse_args(["init-credentials", "--namespace", NS])
    assert args.handler is run_init_credentials
    assert args.namespace == NS
    with pytest.raises(SystemExit):
        parser.parse_args(["init-credentials"])  # the namespace is required
    help_text = subprocess.run(
        [str(Path(sys.executable).with_name("kubebots")), "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "init-credentials" in help_text


def test_the_command_prints_names_and_never_a_value() -> None:
    fake = FakeSecrets()
    code, out, err = run(fake, "--namespace", NS)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "Secret kubebots-system/kubebots-postgres: created (keys: password)",
        "Secret kubebots-system/kubebots-store: created (keys: url, conversations-url)",
        "Secret kubebots-system/kubebots-api-keys: created"
        " (keys: admin-key, keys.yaml, client-key)",
    ]
    values = [value.decode() for data in fake.secrets.values() for value in data.values()]
    for value in values:
        for line in value.splitlines():
            for word in line.replace(":", " ").replace("@", " ").split():
                if len(word) >= 16:  # every generated value and digest
                    assert word not in out
    code, out, err = run(fake, "-n", NS)
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"Secret kubebots-system/{name}: exists, kept as it is"
        for name in (POSTGRES_SECRET, STORE_SECRET, API_KEYS_SECRET)
    ]


def test_the_command_fails_with_the_reason_on_stderr() -> None:
    fake = FakeSecrets()
    fake.secrets[(NS, POSTGRES_SECRET)] = {}
    code, out, err = run(fake, "-n", NS)
    assert (code, out) == (1, "")
    assert "kubebots-postgres exists without a 'password' key" in err

    class Forbidden(FakeSecrets):
        def create(
            self, namespace: str, name: str, data: Mapping[str, str], labels: Mapping[str, str]
        ) -> bool:
            body = {"kind": "Status", "message": 'secrets is forbidden: cannot create "secrets"'}
            raise api_error(403, "Forbidden", body)

    code, out, err = run(Forbidden(), "-n", NS)
    assert (code, out) == (1, "")
    assert err.strip() == (
        'init-credentials: HTTP 403 Forbidden: secrets is forbidden: cannot create "secrets"'
    )


# -- the adapter on the official client ----------------------------------------------------


def test_the_adapter_maps_404_and_409_and_decodes_data() -> None:
    api = FakeCoreV1Api()
    secrets = KubeSecrets(api)
    assert secrets.read(NS, "s") is None
    assert secrets.create(NS, "s", {"k": "v\n", "yaml": "a: 1\n"}, {"l": "x"}) is True
    stored = api.stored[(NS, "s")]
    assert (stored.kind, stored.type, stored.metadata.namespace) == ("Secret", "Opaque", NS)
    assert stored.metadata.labels == {"l": "x"}
    assert secrets.read(NS, "s") == {"k": b"v\n", "yaml": b"a: 1\n"}
    assert secrets.create(NS, "s", {"k": "other"}, {}) is False
    assert secrets.read(NS, "s") == {"k": b"v\n", "yaml": b"a: 1\n"}


def test_the_adapter_raises_other_api_errors() -> None:
    class Broken(FakeCoreV1Api):
        def read_namespaced_secret(self, name: str, namespace: str) -> Any:
            raise api_error(403, "Forbidden")

    with pytest.raises(ApiException) as caught:
        KubeSecrets(Broken()).read(NS, "s")
    assert caught.value.status == 403


def test_the_whole_flow_on_the_adapter() -> None:
    api = FakeCoreV1Api()
    assert [o.created for o in init_credentials(KubeSecrets(api), NS)] == [True] * 3
    assert [o.created for o in init_credentials(KubeSecrets(api), NS)] == [False] * 3
    keys = base64.b64decode(api.stored[(NS, API_KEYS_SECRET)].data["keys.yaml"]).decode()
    assert yaml.safe_load(keys)["clients"][0]["clientId"] == CLIENT_ID


def test_argparse_namespace_is_all_the_handler_reads() -> None:
    fake = FakeSecrets()
    code = run_init_credentials(
        argparse.Namespace(namespace="team-a"), {}, connect=lambda: fake, out=io.StringIO()
    )
    assert code == 0
    assert {ns for ns, _ in fake.secrets} == {"team-a"}
