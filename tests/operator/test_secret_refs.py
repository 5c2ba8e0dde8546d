"""Every Secret key a Bot names (its LLM key, its fallbacks', its tools' headers) is tracked:
listed through the schema with its field path, checked before a write, recorded in the store
annotation (the format of :mod:`kubebots.operator.secret_stamp`) and followed on a change.
Real (memory) config store, fake Secret versions."""

from __future__ import annotations

import json
from typing import Any

from kubebots.operator.reconcile import Applied, BotRef, apply, rotate_secret
from kubebots.operator.secret_stamp import SECRET_VERSION, recorded, stamp
from kubebots.runtime.configstore import MemoryConfigStore
from kubebots.runtime.schema import SecretKeyRef, parse_bot_config
from kubebots.runtime.schema.secret_refs import secret_refs, spec_secret_refs

from .support import FakeSecretVersions, secret_spec, tool_secret_spec


def ref(spec: Any, generation: int = 1) -> BotRef:
    return BotRef("ns", "a", "uid-a", generation, spec)


def key(name: str, key_: str) -> SecretKeyRef:
    return SecretKeyRef(name=name, key=key_)


def every_kind() -> dict[str, Any]:
    """A spec naming a Secret in each place one can be named."""
    spec = tool_secret_spec("llm-keys", "tool-auth", fallback="backup")
    header = {"name": "X-Api-Key", "secretRef": {"name": "mcp-auth", "key": "k"}}
    plain = {"name": "X-Team", "value": "search"}
    spec["tools"]["mcp"] = [
        {"name": "files", "url": "http://files:8000/mcp"},
        {"name": "search", "url": "http://search:8000/mcp", "headers": [plain, header]},
    ]
    return spec


def test_every_secret_key_a_config_names_is_listed_with_its_field_path() -> None:
    assert secret_refs(parse_bot_config(every_kind())) == [
        ("llm.apiKeySecretRef", key("llm-keys", "k")),
        ("llm.fallbacks.0.apiKeySecretRef", key("backup", "fallback-key")),
        ("tools.mcp.1.headers.1.secretRef", key("mcp-auth", "k")),
        ("tools.http.0.headers.0.secretRef", key("tool-auth", "token")),
    ]
    assert secret_refs(parse_bot_config({})) == []


def test_a_spec_invalid_elsewhere_still_names_the_secrets_of_its_valid_sections() -> None:
    spec = {**every_kind(), "limits": {"bogus": 1}}
    assert spec_secret_refs(spec) == secret_refs(parse_bot_config(every_kind()))
    bad_llm = {**every_kind(), "llm": {"provider": "nope"}}
    assert [p for p, _ in spec_secret_refs(bad_llm)] == [
        "tools.mcp.1.headers.1.secretRef",
        "tools.http.0.headers.0.secretRef",
    ]
    bad_tools = {**every_kind(), "tools": {"http": [{"name": "x"}]}}  # no url
    assert [p for p, _ in spec_secret_refs(bad_tools)] == [
        "llm.apiKeySecretRef",
        "llm.fallbacks.0.apiKeySecretRef",
    ]


def test_the_annotation_is_one_version_for_one_secret_and_sorted_json_for_several() -> None:
    one = [
        ("llm.apiKeySecretRef", key("s", "a")),
        ("tools.http.0.headers.0.secretRef", key("s", "b")),
    ]
    assert stamp([], {}) == {}
    assert stamp(one, {"s": "7"}) == {SECRET_VERSION: "7"}  # as operators before the tools
    several = [("llm.apiKeySecretRef", key("z", "a")), ("x", key("b", "c"))]
    assert stamp(several, {"z": "7", "b": "9"}) == {SECRET_VERSION: '{"b":"9","z":"7"}'}
    assert recorded({SECRET_VERSION: "7"}, one) == {"s": "7"}
    assert recorded({SECRET_VERSION: '{"b":"9","z":"7"}'}, several) == {"b": "9", "z": "7"}
    # a plain value (an older operator's) is the version of the first reference's Secret
    assert recorded({SECRET_VERSION: "7"}, several) == {"z": "7"}
    assert recorded({}, one) == {} and recorded({SECRET_VERSION: "{bad"}, several) == {}


async def test_every_secret_is_checked_and_recorded_with_one_read_per_key() -> None:
    store, secrets = MemoryConfigStore(), FakeSecretVersions()
    secrets.put("ns", "llm-keys", "7", "k")
    secrets.put("ns", "backup", "8", "fallback-key")
    secrets.put("ns", "tool-auth", "9", "token")
    spec = tool_secret_spec("llm-keys", "tool-auth", fallback="backup")
    applied = await apply(store, ref(spec), secrets)
    versions = {"backup": "8", "llm-keys": "7", "tool-auth": "9"}
    assert applied.annotations == {SECRET_VERSION: json.dumps(versions, separators=(",", ":"))}
    entry = await store.get("ns:a")
    assert entry is not None and entry.annotations == applied.annotations
    assert secrets.reads == 3
    # one Secret for the LLM key and the tool header: its version alone, as before the tools
    secrets.put("ns", "keys", "11", "k", "token")
    applied = await apply(store, ref(tool_secret_spec("keys", "keys"), 2), secrets)
    assert applied.annotations == {SECRET_VERSION: "11"}


async def test_a_missing_tool_header_key_names_its_field_path_and_writes_nothing() -> None:
    store, secrets = MemoryConfigStore(), FakeSecretVersions()
    secrets.put("ns", "llm-keys", "7", "k")
    secrets.put("ns", "tool-auth", "9", "other")
    missing = await apply(store, ref(tool_secret_spec("llm-keys", "tool-auth")), secrets)
    why = "spec.tools.http.0.headers.0.secretRef: Secret 'tool-auth' has no key 'token'"
    assert missing == Applied(secret_missing=why)
    # every missing key is named, the fallback's too
    spec = tool_secret_spec("llm-keys", "nowhere", fallback="gone")
    missing = await apply(store, ref(spec), secrets)
    assert missing.secret_missing == (
        "spec.llm.fallbacks.0.apiKeySecretRef: Secret 'gone' not found in namespace 'ns'; "
        "spec.tools.http.0.headers.0.secretRef: Secret 'nowhere' not found in namespace 'ns'"
    )
    assert await store.get("ns:a") is None and await store.current_revision() == 0


async def test_an_entry_of_an_older_operator_is_current_or_rewritten_once() -> None:
    store, secrets = MemoryConfigStore(), FakeSecretVersions()
    secrets.put("ns", "keys", "7", "k")
    secrets.put("ns", "tool-auth", "9", "token")
    old = {SECRET_VERSION: "7"}  # what the operator wrote before it tracked more than the LLM key
    await store.put("ns:a", secret_spec("keys"), generation=1, uid="uid-a", annotations=old)
    revision = await store.current_revision()
    assert (await apply(store, ref(secret_spec("keys")), secrets)).revision == revision
    # a Bot that also names a tool Secret: written once with every version, then current
    spec = tool_secret_spec("keys", "tool-auth")
    await store.put("ns:a", spec, generation=2, uid="uid-a", annotations=old)
    first = await apply(store, ref(spec, 2), secrets)
    assert first.revision == revision + 2
    assert first.annotations == {SECRET_VERSION: '{"keys":"7","tool-auth":"9"}'}
    assert (await apply(store, ref(spec, 2), secrets)).revision == first.revision


async def test_a_change_of_any_named_secret_rewrites_the_entry_with_its_version() -> None:
    store = MemoryConfigStore()
    spec = tool_secret_spec("keys", "tool-auth")
    stamped = {SECRET_VERSION: '{"keys":"7","tool-auth":"9"}'}
    await store.put("ns:a", spec, generation=3, uid="u1", annotations=stamped)
    await store.put("ns:b", secret_spec("keys"), generation=1, uid="u2")
    rotation = await rotate_secret(store, "ns", "tool-auth", "10", {"token"})
    assert rotation.rewritten == ["ns:a"] and rotation.lacking == []
    entry = await store.get("ns:a")
    assert entry is not None and entry.generation == 3
    assert entry.annotations == {SECRET_VERSION: '{"keys":"7","tool-auth":"10"}'}
    again = await rotate_secret(store, "ns", "tool-auth", "10", {"token"})
    assert again.rewritten == [] and (await store.get("ns:a")) == entry
    # the LLM key's Secret: both Bots naming it follow
    rotation = await rotate_secret(store, "ns", "keys", "8", {"k"})
    assert rotation.rewritten == ["ns:a", "ns:b"]
    entry = await store.get("ns:a")
    assert entry is not None
    assert entry.annotations == {SECRET_VERSION: '{"keys":"8","tool-auth":"10"}'}
    # the tool's key is gone: left as it is (its replicas would fail to read it)
    rotation = await rotate_secret(store, "ns", "tool-auth", "11", {"other"})
    assert rotation.rewritten == [] and rotation.lacking == ["ns:a"]
    assert await store.get("ns:a") == entry


async def test_a_bot_naming_two_keys_of_a_secret_needs_both_to_follow_it() -> None:
    store = MemoryConfigStore()
    spec = tool_secret_spec("keys", "keys")  # the LLM key "k" and the header's "token"
    await store.put("ns:a", spec, generation=1, uid="u1", annotations={SECRET_VERSION: "1"})
    assert (await rotate_secret(store, "ns", "keys", "2", {"k"})).lacking == ["ns:a"]
    rotation = await rotate_secret(store, "ns", "keys", "2", {"k", "token"})
    assert rotation.rewritten == ["ns:a"]
    entry = await store.get("ns:a")
    assert entry is not None and entry.annotations == {SECRET_VERSION: "2"}
