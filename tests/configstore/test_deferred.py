"""A config store that connects on first use (a process may start before its database).

The opener is real: it fails as a PostgreSQL that is not up does (a :class:`StoreError`), then
opens a real store. The PostgreSQL cases use a port where nothing listens, and the real server.
How a failed open is retried is the kernel's (``tests/persistence/test_deferred.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kubebots.runtime.configstore import (
    DeferredConfigStore,
    MemoryConfigStore,
    ReplicaReport,
    ReportingConfigStore,
    StoreError,
    open_config_store,
)
from tests.persistence.opener import Opener

from .util import take

SECRET = "hunter2-never-shown"


async def test_the_deferred_store_is_a_config_store_once_open() -> None:
    inner = MemoryConfigStore()
    opener = Opener[ReportingConfigStore](inner, failures=1, error=StoreError)
    store = DeferredConfigStore(opener, retry_interval=0)
    with pytest.raises(StoreError, match="refused"):
        await store.list()
    assert store.last_error is not None
    rev = await store.put("default:a", {"llm": {"provider": "echo"}}, generation=1, uid="u")
    assert (await store.get("default:a")) is not None
    assert await store.list() == await inner.list()
    assert await store.current_revision() == rev
    events = await take(store, 0, 1)
    assert [(e.type, e.bot_id) for e in events] == [("PUT", "default:a")]
    await store.report(ReplicaReport("r1", rev, datetime.now(UTC)))
    assert [r.replica_id for r in await store.replica_reports(max_age_seconds=60)] == ["r1"]
    assert await store.expire_replicas(max_age_seconds=60) == 0
    assert await store.delete("default:a") == rev + 1
    assert await store.compact(0) >= 0
    assert store.last_error is None
    await store.close()


async def test_postgres_not_up_yet_opens_at_once_and_calls_say_why_without_credentials() -> None:
    url = f"postgresql://kubebots:{SECRET}@127.0.0.1:1/kubebots"  # nothing listens on port 1
    store = await open_config_store(url, wait_for_server=True)
    assert isinstance(store, DeferredConfigStore)
    with pytest.raises(StoreError) as caught:
        await store.list()
    assert "PostgreSQL connection failed" in caught.value.message
    assert "refused" in caught.value.message.lower()
    assert SECRET not in caught.value.message and "kubebots:" not in caught.value.message
    await store.close()


async def test_a_malformed_postgres_url_still_fails_at_once() -> None:
    url = f"postgresql://u:{SECRET}@h/db password=x y"
    with pytest.raises(StoreError, match="the connection URL is malformed") as caught:
        await open_config_store(url, wait_for_server=True)
    assert SECRET not in caught.value.message


@pytest.mark.postgres
async def test_postgres_connects_on_first_use(postgres_url: str, pg_prefix: str) -> None:
    store = await open_config_store(postgres_url, prefix=pg_prefix, wait_for_server=True)
    try:
        rev = await store.put("default:late", {"llm": {"provider": "echo"}}, generation=1, uid="u")
        entry = await store.get("default:late")
        assert entry is not None and entry.revision == rev
    finally:
        await store.close()
