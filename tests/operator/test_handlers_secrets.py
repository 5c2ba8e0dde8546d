"""The handlers follow every Secret a Bot names, not only its LLM key: a tool header's Secret
or a fallback's that is missing stalls the Bot (``SecretMissing`` naming the field path) and
writes nothing; its creation writes the Bot, its change re-writes the store entry.

Called as kopf calls them, on a real (memory) config store and fake Secret versions.
"""

from __future__ import annotations

from kubebots.operator.handlers import secret_changed
from kubebots.operator.secret_stamp import SECRET_VERSION
from kubebots.runtime.configstore import MemoryConfigStore

from .support import FakeSecretVersions, operator, tool_secret_spec
from .test_handlers import LOG, Listings, cond, meta, run_reconcile, secret_event


async def test_a_tool_header_secret_is_waited_for_then_followed() -> None:
    store, secrets = MemoryConfigStore(), FakeSecretVersions()
    m = operator(store, secrets)
    feed = m.services.status_feed
    secrets.put("default", "llm-keys", "100", "k")
    spec = tool_secret_spec("llm-keys", "tool-auth")
    status = await run_reconcile(m, meta(), spec)
    for kind in ("Ready", "Synced"):
        assert cond(status, kind)["reason"] == "SecretMissing"
    path = "spec.tools.http.0.headers.0.secretRef"
    assert cond(status, "Ready")["message"] == (
        f"{path}: Secret 'tool-auth' not found in namespace 'default'"
    )
    assert cond(status, "Stalled")["status"] == "True"
    assert await store.get("default:support") is None

    # the Secret is created: the Bot is written with both Secrets' versions
    secrets.put("default", "tool-auth", "200", "token")
    created = secret_event("tool-auth", "200", "token")
    await secret_changed(type="ADDED", memo=m.memo, logger=LOG, **created)
    entry = await store.get("default:support")
    assert entry is not None
    assert entry.annotations == {SECRET_VERSION: '{"llm-keys":"100","tool-auth":"200"}'}
    await feed.tick()
    assert cond(m.patcher.last(), "Synced")["status"] == "True"
    assert m.patcher.last()["revision"] == entry.revision

    # it changes: the entry is re-written (a new revision, same generation)
    secrets.put("default", "tool-auth", "201", "token")
    changed = secret_event("tool-auth", "201", "token")
    await secret_changed(type="MODIFIED", memo=m.memo, logger=LOG, **changed)
    rotated = await store.get("default:support")
    assert rotated is not None and rotated.revision > entry.revision
    assert rotated.generation == 1
    assert rotated.annotations == {SECRET_VERSION: '{"llm-keys":"100","tool-auth":"201"}'}
    await feed.tick()
    assert m.patcher.last()["revision"] == rotated.revision

    # it loses the key: the entry stays, the Bot shows SecretMissing with the path
    secrets.put("default", "tool-auth", "202", "other")
    lost = secret_event("tool-auth", "202", "other")
    await secret_changed(type="MODIFIED", memo=m.memo, logger=LOG, **lost)
    assert await store.get("default:support") == rotated
    await feed.tick()
    ready = cond(m.patcher.last(), "Ready")
    assert ready["reason"] == "SecretMissing"
    assert ready["message"] == f"{path}: Secret 'tool-auth' has no key 'token'"


async def test_a_fallbacks_secret_is_followed_and_costs_a_store_read_only_when_named() -> None:
    store, secrets = Listings(), FakeSecretVersions()
    m = operator(store, secrets)
    secrets.put("default", "llm-keys", "100", "k")
    secrets.put("default", "tool-auth", "200", "token")
    secrets.put("default", "backup", "300", "fallback-key")
    spec = tool_secret_spec("llm-keys", "tool-auth", fallback="backup")
    status = await run_reconcile(m, meta(), spec)
    assert cond(status, "Synced")["status"] == "True"
    entry = await store.get("default:support")
    assert entry is not None
    unrelated = secret_event("unrelated", "9", "token")
    await secret_changed(type="MODIFIED", memo=m.memo, logger=LOG, **unrelated)
    assert store.listings == 0
    secrets.put("default", "backup", "301", "fallback-key")
    changed = secret_event("backup", "301", "fallback-key")
    await secret_changed(type="MODIFIED", memo=m.memo, logger=LOG, **changed)
    assert store.listings == 1
    rotated = await store.get("default:support")
    assert rotated is not None and rotated.revision > entry.revision
    versions = '{"backup":"301","llm-keys":"100","tool-auth":"200"}'
    assert rotated.annotations == {SECRET_VERSION: versions}
