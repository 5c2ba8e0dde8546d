"""A config store that connects on first use (a process may start before its database).

The opener is real: it fails as a PostgreSQL that is not up does (a :class:`StoreError`), then
opens a real store; the clock is injected where the retry interval matters. The PostgreSQL
cases use a port where nothing listens, and the real server.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from kubebots.runtime.errors import StorageError
from kubebots.runtime.ratelimit import DeferredRateLimiter, MemoryRateLimiter, RateLimiter
from kubebots.runtime.storage._deferred import Deferred
from kubebots.runtime.store import (
    ConfigStore,
    DeferredConfigStore,
    MemoryConfigStore,
    ReplicaReport,
    StoreError,
    open_config_store,
)

from .util import take

SECRET = "hunter2-never-shown"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Opener:
    """Fails ``failures`` times like a database that is not up, then opens ``store``."""

    def __init__(self, failures: int, store: ConfigStore | None = None) -> None:
        self.failures = failures
        self.store = store or MemoryConfigStore()
        self.attempts = 0
        self.closed = 0

    async def __call__(self) -> ConfigStore:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise StoreError(f"PostgreSQL connection failed: refused (attempt {self.attempts})")
        return self.store

    async def release(self, store: ConfigStore) -> None:
        self.closed += 1
        await store.close()


async def test_fails_with_the_open_error_then_opens_once_the_database_is_up() -> None:
    opener, clock = Opener(failures=2), Clock()
    deferred = Deferred(opener, opener.release, what="config store", clock=clock)
    with pytest.raises(StoreError, match="attempt 1"):
        await deferred.get()
    assert str(deferred.last_error) == "PostgreSQL connection failed: refused (attempt 1)"
    # within the retry interval: the last error at once, no new connection attempt
    clock.now += 0.5
    with pytest.raises(StoreError, match="attempt 1"):
        await deferred.get()
    assert opener.attempts == 1
    clock.now += 0.6
    with pytest.raises(StoreError, match="attempt 2"):
        await deferred.get()
    clock.now += 1.1
    assert await deferred.get() is opener.store
    assert deferred.last_error is None
    assert await deferred.get() is opener.store
    assert opener.attempts == 3


async def test_concurrent_first_calls_open_once() -> None:
    opener = Opener(failures=0)
    deferred = Deferred(opener, opener.release, what="config store")
    got = await asyncio.gather(*(deferred.get() for _ in range(20)))
    assert all(s is opener.store for s in got)
    assert opener.attempts == 1


async def test_close_releases_once_and_nothing_opens_after() -> None:
    opener = Opener(failures=0)
    deferred = Deferred(opener, opener.release, what="config store")
    await deferred.get()
    await deferred.close()
    await deferred.close()
    assert opener.closed == 1
    with pytest.raises(StorageError, match="the config store is closed"):
        await deferred.get()


async def test_close_before_any_open_opens_nothing() -> None:
    opener = Opener(failures=0)
    deferred = Deferred(opener, opener.release, what="config store")
    await deferred.close()
    assert (opener.attempts, opener.closed) == (0, 0)


async def test_the_deferred_store_is_a_config_store_once_open() -> None:
    inner = MemoryConfigStore()
    store = DeferredConfigStore(Opener(failures=1, store=inner), retry_interval=0)
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


async def test_the_deferred_rate_limiter_opens_on_first_use() -> None:
    attempts = 0
    real = MemoryRateLimiter()

    async def open_limiter() -> RateLimiter:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise StorageError("PostgreSQL connection failed: refused")
        return real

    limiter = DeferredRateLimiter(open_limiter, retry_interval=0)
    with pytest.raises(StorageError, match="refused"):
        await limiter.acquire("c", limit=1)
    assert (await limiter.acquire("c", limit=1)).allowed
    assert not (await limiter.acquire("c", limit=1)).allowed
    await limiter.record("c", cost=5)
    await limiter.close()
    with pytest.raises(StorageError, match="the rate limiter is closed"):
        await limiter.acquire("c", limit=1)
