"""API keys: loading sources, hashing, authentication, allow-lists, and errors that keep secrets."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kubebots.runtime.auth import KeyRing, Principal, hash_key
from kubebots.runtime.errors import ConfigurationError

SECRET = "s3cr3t-plain-key-value"
OTHER = "another-key-0123456789"
HASHED = "hashed-key-abcdefghij"

YAML_FILE = f"""
clients:
  - clientId: tenant-a
    keys: ["{hash_key(HASHED)}", "{SECRET}"]
    bots: ["default:support", "team-a:*"]
    requestsPerMinute: 60
    tokensPerMinute: 100000
  - clientId: ops
    keys: ["{OTHER}"]
    admin: true
"""


def write(tmp_path: Path, text: str, name: str = "keys.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(**kwargs: Any) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        KeyRing.load(**kwargs)
    return info.value


def assert_no_secret(err: ConfigurationError, *secrets: str) -> None:
    shown = f"{err} {err.detail} {err.errors} {err.__cause__} {err.__context__}"
    for secret in secrets:
        assert secret not in shown
        assert hashlib.sha256(secret.encode()).hexdigest() not in shown


def test_hash_key_is_sha256_hex() -> None:
    assert hash_key("test") == (
        "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    )


def test_load_yaml_file_with_hashed_and_plain_keys(tmp_path: Path) -> None:
    ring = KeyRing.load(write(tmp_path, YAML_FILE))
    assert len(ring) == 3
    tenant = ring.authenticate(SECRET)
    assert tenant == Principal(
        "tenant-a",
        bots=("default:support", "team-a:*"),
        requests_per_minute=60,
        tokens_per_minute=100000,
        admin=False,
    )
    assert ring.authenticate(HASHED) is tenant
    ops = ring.authenticate(OTHER)
    assert ops is not None and ops.client_id == "ops" and ops.admin and ops.bots is None
    assert ops.requests_per_minute is None and ops.tokens_per_minute is None


def test_unknown_or_odd_keys_do_not_authenticate(tmp_path: Path) -> None:
    ring = KeyRing.load(write(tmp_path, YAML_FILE))
    for presented in ("", "nope", SECRET + " ", SECRET.upper(), "\ud800"):
        assert ring.authenticate(presented) is None
    # Presenting a stored digest is not presenting the key.
    assert ring.authenticate(hash_key(HASHED)) is None
    assert ring.authenticate(hash_key(SECRET)) is None


def test_plaintext_is_not_kept(tmp_path: Path) -> None:
    ring = KeyRing.load(write(tmp_path, YAML_FILE))
    assert SECRET not in repr(ring)
    assert SECRET not in repr(ring._by_digest)


def test_uppercase_digest_is_accepted(tmp_path: Path) -> None:
    upper = "sha256:" + hashlib.sha256(SECRET.encode()).hexdigest().upper()
    ring = KeyRing.load(json_text=json.dumps({"clients": [{"clientId": "a", "keys": [upper]}]}))
    assert ring.authenticate(SECRET) == Principal("a")


def test_json_text_and_json_file(tmp_path: Path) -> None:
    doc = {"clients": [{"clientId": "j", "keys": [SECRET], "requestsPerMinute": 5}]}
    from_text = KeyRing.load(json_text=json.dumps(doc))
    assert from_text.authenticate(SECRET) == Principal("j", requests_per_minute=5)
    # A .json file is parsed as JSON: tab indentation (invalid in YAML) is fine.
    path = write(tmp_path, json.dumps(doc, indent="\t"), name="keys.json")
    assert KeyRing.load(path).authenticate(SECRET) == Principal("j", requests_per_minute=5)


def test_file_and_json_text_are_merged(tmp_path: Path) -> None:
    extra = json.dumps({"clients": [{"clientId": "env-client", "keys": ["env-key-0123456789"]}]})
    ring = KeyRing.load(str(write(tmp_path, YAML_FILE)), json_text=extra)
    assert len(ring) == 4
    found = ring.authenticate("env-key-0123456789")
    assert found is not None and found.client_id == "env-client"


def test_admin_key(tmp_path: Path) -> None:
    ring = KeyRing.load(admin_key="the-admin-key-value")
    assert len(ring) == 1
    admin = ring.authenticate("the-admin-key-value")
    assert admin == Principal("admin", admin=True)
    assert admin.may_use("any:bot")
    hashed = KeyRing.load(write(tmp_path, YAML_FILE), admin_key=hash_key("adm"))
    assert hashed.authenticate("adm") == Principal("admin", admin=True)
    assert len(hashed) == 4


def test_no_sources_is_an_empty_ring() -> None:
    ring = KeyRing.load()
    assert len(ring) == 0
    assert ring.authenticate("anything") is None


def test_allow_list_globs() -> None:
    p = Principal("t", bots=("default:support", "team-a:*", "qa:bot-?"))
    assert p.may_use("default:support")
    assert p.may_use("team-a:x") and p.may_use("team-a:")
    assert p.may_use("qa:bot-1") and not p.may_use("qa:bot-10")
    assert not p.may_use("default:sales")
    assert not p.may_use("TEAM-A:x")  # case-sensitive
    assert not p.may_use("team-b:x")
    assert Principal("all").may_use("whatever:bot")
    assert not Principal("none", bots=()).may_use("default:support")


def test_authenticate_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    ring = KeyRing.load(admin_key=SECRET)
    assert ring.authenticate(SECRET) is not None
    assert calls and calls[-1][0] == calls[-1][1] == hash_key(SECRET).encode()


@pytest.mark.parametrize(
    ("document", "field", "reason"),
    [
        (
            {"clients": [{"clientId": "a", "keys": [SECRET], "bogus": 1}]},
            "clients.0.bogus",
            "unknown",
        ),
        ({"clients": [{"client_id": "a", "keys": [SECRET]}]}, "clients.0.client_id", "unknown"),
        ({"clients": [{"clientId": "a", "keys": []}]}, "clients.0.keys", "at least 1"),
        ({"clients": [{"clientId": "a", "keys": [SECRET, ""]}]}, "clients.0.keys.1", "empty"),
        (
            {"clients": [{"clientId": "a", "keys": [f" {SECRET}"]}]},
            "clients.0.keys.0",
            "whitespace",
        ),
        ({"clients": [{"clientId": "a", "keys": ["sha256:" + SECRET]}]}, "clients.0.keys.0", "64"),
        ({"clients": [{"clientId": "a", "keys": [123]}]}, "clients.0.keys.0", "string"),
        (
            {"clients": [{"clientId": "a", "keys": [SECRET + "\ud800"]}]},
            "clients.0.keys.0",
            "Unicode",
        ),
        ({"clients": [{"clientId": "a b", "keys": [SECRET]}]}, "clients.0.clientId", "pattern"),
        ({"clients": [{"keys": [SECRET]}]}, "clients.0.clientId", "required"),
        (
            {"clients": [{"clientId": "a", "keys": [SECRET], "requestsPerMinute": 0}]},
            "clients.0.requestsPerMinute",
            "greater than 0",
        ),
        (
            {"clients": [{"clientId": "a", "keys": [SECRET], "tokensPerMinute": "9"}]},
            "clients.0.tokensPerMinute",
            "integer",
        ),
        ({"clients": [{"clientId": "a", "keys": [SECRET], "bots": [""]}]}, "clients.0.bots.0", ""),
        ({"clients": [{"clientId": "a", "keys": [SECRET], "admin": "yes"}]}, "clients.0.admin", ""),
        ({"client": []}, "client", "unknown"),
        ({}, "clients", "required"),
        (
            {"clients": [{"clientId": "a", "keys": [SECRET]}, {"clientId": "b", "keys": [SECRET]}]},
            "clients.1.keys.0",
            "already belongs to client 'a'",
        ),
        (
            {"clients": [{"clientId": "a", "keys": [SECRET, hash_key(SECRET)]}]},
            "clients.0.keys.1",
            "already belongs",
        ),
        (
            {"clients": [{"clientId": "a", "keys": [SECRET]}, {"clientId": "a", "keys": [OTHER]}]},
            "clients.1.clientId",
            "already defined",
        ),
    ],
)
def test_bad_documents_name_the_field_and_never_the_key(
    tmp_path: Path, document: dict[str, Any], field: str, reason: str
) -> None:
    for kwargs in (
        {"json_text": json.dumps(document)},
        {"path": write(tmp_path, json.dumps(document))},
    ):
        err = config_error(**kwargs)
        assert field in err.fields, err.errors
        assert reason in str(err)
        assert field in str(err)
        assert_no_secret(err, SECRET, OTHER)


def test_duplicate_across_sources_and_admin(tmp_path: Path) -> None:
    path = write(tmp_path, YAML_FILE)
    again = json.dumps({"clients": [{"clientId": "env", "keys": [SECRET]}]})
    err = config_error(path=path, json_text=again)
    assert err.fields == ["clients.0.keys.0"] and "tenant-a" in str(err)
    assert_no_secret(err, SECRET)
    err = config_error(path=path, admin_key=OTHER)
    assert err.fields == ["clients.1.keys.0"] and "'admin'" in str(err)
    named_admin = json.dumps({"clients": [{"clientId": "admin", "keys": [SECRET]}]})
    err = config_error(json_text=named_admin, admin_key=OTHER)
    assert err.fields == ["clients.0.clientId"] and "reserved" in str(err)
    assert KeyRing.load(json_text=named_admin).authenticate(SECRET) == Principal("admin")


def test_bad_admin_key() -> None:
    for bad in ("", f" {SECRET}", "sha256:zz", f"{SECRET}\ud800"):
        err = config_error(admin_key=bad)
        assert err.fields == ["adminKey"]
        assert err.__context__ is None
        assert_no_secret(err, SECRET)


@pytest.mark.parametrize(
    "text",
    [
        f"clients:\n  - clientId: a\n    keys: [{SECRET}\n",  # unclosed flow sequence
        f"clients:\n  - clientId: a\n    keys: [*{SECRET}]\n",  # undefined alias named like the key
        f"clients:\n\t- keys: ['{SECRET}']\n",  # tab indentation
        f"clients: [{{clientId: a, keys: ['{SECRET}'}}]]\n",
    ],
)
def test_unparsable_yaml_never_quotes_the_file(tmp_path: Path, text: str) -> None:
    err = config_error(path=write(tmp_path, text))
    assert "not valid YAML" in str(err) and "line" in str(err)
    assert_no_secret(err, SECRET)


def test_unparsable_json_text() -> None:
    err = config_error(json_text='{"clients": [{"clientId": "a", "keys": ["' + SECRET + '"]')
    assert "not valid JSON" in str(err)
    assert_no_secret(err, SECRET)


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n"])
def test_document_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    err = config_error(path=write(tmp_path, text))
    assert "mapping" in str(err)


def test_unreadable_files(tmp_path: Path) -> None:
    assert "cannot read" in str(config_error(path=tmp_path / "missing.yaml"))
    assert "cannot read" in str(config_error(path=tmp_path))
    binary = tmp_path / "keys.yaml"
    binary.write_bytes(b"\xff\xfe" + SECRET.encode())
    err = config_error(path=binary)
    assert "UTF-8" in str(err) and err.__context__ is None


def test_key_ring_rejects_non_digest_entries() -> None:
    with pytest.raises(ValueError, match="sha256"):
        KeyRing({SECRET: Principal("a")})
    ring = KeyRing({hash_key(SECRET): Principal("a")})
    assert ring.authenticate(SECRET) == Principal("a")


def test_cli_prints_digests() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kubebots.runtime.auth"],
        input=f"{SECRET}\n\n{OTHER}\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.splitlines() == [hash_key(SECRET), hash_key(OTHER)]
    empty = subprocess.run(
        [sys.executable, "-m", "kubebots.runtime.auth"],
        input="",
        capture_output=True,
        text=True,
        check=False,
    )
    assert empty.returncode == 2


@pytest.mark.parametrize(
    ("weak", "reason"),
    [
        ("x", "too short"),
        ("abc123", "too short"),
        ("a" * 40, "too weak"),
        ("abababab" * 4, "too weak"),
    ],
)
def test_weak_keys_are_refused_at_load(weak: str, reason: str) -> None:
    doc = json.dumps({"clients": [{"clientId": "a", "keys": [weak]}]})
    with pytest.raises(ConfigurationError, match=reason) as caught:
        KeyRing.load(json_text=doc)
    assert caught.value.fields == ["clients.0.keys.0"]
    with pytest.raises(ConfigurationError, match=reason):
        KeyRing.load(admin_key=weak)
    # A digest's key cannot be judged: it is accepted as it is.
    assert len(KeyRing.load(admin_key=hash_key(weak))) == 1
