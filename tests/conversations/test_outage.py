"""A PostgreSQL outage costs a request about a second, not the connect timeout (issue 14.5):
a pool holding no connection (the server is unreachable) lets a call wait at most OUTAGE_WAIT,
then it fails with a StorageError (a 503 with Retry-After); the pool reconnects by
itself once the database is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from kubebots.runtime.conversations import ConversationKey, PostgresConversationStore
from kubebots.runtime.errors import StorageError
from kubebots.runtime.persistence.postgres import OUTAGE_WAIT
from kubebots.runtime.ratelimit import PostgresRateLimiter
from tests.private_postgres import PrivatePostgres

KEY = ConversationKey("bot", "client", "c1")
SECRET = "pw-outage-never-quoted-9b1"


@pytest.fixture
def pg() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as server:
        server.start()
        yield server


async def _failure_takes(call: object) -> float:
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        await call  # type: ignore[misc]
    assert SECRET not in str(caught.value)
    return time.monotonic() - started


async def test_requests_fail_within_a_second_and_recover(pg: PrivatePostgres) -> None:
    url = pg.url(password=SECRET)
    store = await PostgresConversationStore.open(url, pool_size=2, connect_timeout=10)
    limiter = await PostgresRateLimiter.open(url, prefix="outage_", pool_size=2)
    try:
        await store.append(KEY, [("user", "before"), ("assistant", "ok")])
        await limiter.acquire("client", limit=5)
        pg.stop()
        # The connect timeout is 10 s; a request gives up after OUTAGE_WAIT (+ slack).
        assert await _failure_takes(store.recent(KEY, 10)) < OUTAGE_WAIT + 3
        assert await _failure_takes(store.recent(KEY, 10)) < OUTAGE_WAIT + 3
        assert await _failure_takes(limiter.acquire("client", limit=5)) < OUTAGE_WAIT + 3
        pg.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                messages = await store.recent(KEY, 10)
                break
            except StorageError:
                assert time.monotonic() < deadline, "the pool never reconnected"
                await asyncio.sleep(0.2)
        assert [m.content for m in messages] == ["before", "ok"]
        while True:
            try:
                decision = await limiter.acquire("client", limit=5)
                break
            except StorageError:
                assert time.monotonic() < deadline, "the limiter's pool never reconnected"
                await asyncio.sleep(0.2)
        assert decision.allowed
    finally:
        await store.close()
        await limiter.close()
