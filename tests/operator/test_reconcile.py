"""What the operator does for one Bot, on a real (memory) config store and fake Secret versions:
validate, write with the Secret's version, rotate, tombstone orphans."""

from __future__ import annotations

from typing import Any

from kubebots.operator.reconcile import (
    Applied,
    BotRef,
    apply,
    forget_orphans,
    holds,
    is_current,
    rotate_secret,
    validate,
)
from kubebots.runtime.configstore import MemoryConfigStore
from kubebots.runtime.schema import BotConfig, SecretKeyRef

from .support import SPEC, FakeSecretVersions, secret_spec


def ref(spec: Any = SPEC, generation: int = 1, name: str = "a", uid: str = "uid-a") -> BotRef:
    return BotRef("ns", name, uid, generation, spec)


def test_a_valid_spec_parses_and_an_invalid_one_names_its_fields_not_its_values() -> None:
    parsed = validate(ref())
    assert isinstance(parsed, BotConfig) and parsed.system_prompt == "hi"
    bad = {"llm": {"provider": "echo", "apiKey": "sk-SECRET"}, "limits": {"bogus": 1}}
    why = validate(ref(bad))
    assert isinstance(why, str)
    assert why.startswith("spec.llm: ") and "spec.limits.bogus: unknown field" in why
    assert "sk-SECRET" not in why


async def test_apply_writes_a_valid_spec_once_per_generation() -> None:
    store = MemoryConfigStore()
    applied = await apply(store, ref(), FakeSecretVersions())
    entry = await store.get("ns:a")
    assert entry is not None and applied == Applied(revision=entry.revision)
    assert (entry.generation, entry.uid, dict(entry.config)) == (1, "uid-a", SPEC)
    again = await apply(store, ref(), FakeSecretVersions())
    assert again.revision == entry.revision  # an exact repeat writes nothing
    assert await store.current_revision() == entry.revision


async def test_an_invalid_spec_or_a_missing_secret_writes_nothing() -> None:
    store = MemoryConfigStore()
    await apply(store, ref(), FakeSecretVersions())
    revision = await store.current_revision()
    invalid = await apply(store, ref({"llm": {"provider": "nope"}}, 2), FakeSecretVersions())
    assert invalid.invalid is not None and invalid.revision is None
    missing = await apply(store, ref(secret_spec("keys"), 3), FakeSecretVersions())
    why = "spec.llm.apiKeySecretRef: Secret 'keys' not found in namespace 'ns'"
    assert missing == Applied(secret_missing=why)
    assert await store.current_revision() == revision  # the last good config stays


async def test_a_bot_naming_a_secret_is_stamped_with_its_version() -> None:
    store, secrets = MemoryConfigStore(), FakeSecretVersions()
    secrets.put("ns", "keys", "7", "k")
    applied = await apply(store, ref(secret_spec("keys")), secrets)
    assert applied.annotations == {"secretVersion": "7"}
    entry = await store.get("ns:a")
    assert entry is not None and entry.annotations == {"secretVersion": "7"}
    assert is_current(entry, ref(secret_spec("keys")), {"secretVersion": "7"})
    assert not is_current(entry, ref(secret_spec("keys")), {"secretVersion": "8"})


def test_the_secrets_a_spec_names_are_read_through_the_schema() -> None:
    assert ref(secret_spec("keys", "api-key")).secret_refs == (
        ("llm.apiKeySecretRef", SecretKeyRef(name="keys", key="api-key")),
    )
    assert ref().secret_refs == ()
    # camelCase or snake_case, as the schema takes them
    snake = {"llm": {"provider": "openai", "api_key_secret_ref": {"name": "s", "key": "k"}}}
    assert ref(snake).secret_names == {"s"}
    # invalid elsewhere: the llm section still names the Secret (the store may hold the last
    # good config, which a rotation must reach); an invalid reference names none
    assert ref({**secret_spec("keys"), "limits": {"bogus": 1}}).secret_names == {"keys"}
    assert ref({"llm": {"apiKeySecretRef": {"name": "Not_A_Name", "key": "k"}}}).secret_refs == ()
    assert ref({"llm": "openai"}).secret_refs == ()


def test_a_refs_secrets_are_parsed_once() -> None:
    bot = ref(secret_spec("keys"))
    assert bot.secret_names == {"keys"}
    assert bot.secret_refs is bot.secret_refs and bot.secret_names is bot.secret_names


async def test_an_entry_holds_a_ref_of_its_uid_at_that_generation_or_newer() -> None:
    store = MemoryConfigStore()
    await store.put("ns:a", SPEC, generation=2, uid="uid-a")
    entry = await store.get("ns:a")
    assert holds(entry, ref(generation=2)) and holds(entry, ref(generation=1))
    assert not holds(entry, ref(generation=3))
    assert not holds(entry, ref(uid="uid-recreated"))
    assert not holds(None, ref())


async def test_a_rotation_rewrites_the_bots_naming_the_secret_and_a_key_it_holds() -> None:
    store = MemoryConfigStore()
    stamp = {"secretVersion": "1"}
    await store.put("ns:uses", secret_spec("keys"), generation=4, uid="u1", annotations=stamp)
    await store.put("ns:other-key", secret_spec("keys", "gone"), generation=1, uid="u2")
    await store.put("ns:other-secret", secret_spec("more"), generation=1, uid="u3")
    await store.put("ns:none", SPEC, generation=1, uid="u4")
    await store.put("elsewhere:uses", secret_spec("keys"), generation=1, uid="u5")
    before = await store.current_revision()
    rotation = await rotate_secret(store, "ns", "keys", "2", {"k", "unused"})
    assert rotation.rewritten == ["ns:uses"] and rotation.lacking == ["ns:other-key"]
    entry = await store.get("ns:uses")
    assert entry is not None and entry.annotations == {"secretVersion": "2"}
    assert (entry.generation, entry.uid, entry.revision) == (4, "u1", before + 1)
    assert await store.current_revision() == before + 1  # nothing else written
    # the same version again (the operator's listing at a restart): nothing to do
    again = await rotate_secret(store, "ns", "keys", "2", {"k"})
    assert again.rewritten == [] and await store.current_revision() == before + 1


async def test_orphans_are_tombstoned_in_the_watched_namespaces_only() -> None:
    store = MemoryConfigStore()
    for name in ("a", "b"):
        await store.put(f"default:{name}", SPEC, generation=1, uid="u")
    await store.put("other:c", SPEC, generation=1, uid="u")
    assert await forget_orphans(store, {"default:a"}, {"default"}) == ["default:b"]
    assert [e.bot_id for e in (await store.list())[0]] == ["default:a", "other:c"]
    assert await forget_orphans(store, {"default:a"}, None) == ["other:c"]
