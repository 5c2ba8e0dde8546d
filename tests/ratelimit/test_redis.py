"""Redis specifics: the keys (encoded, expiring, one slot per client), the server's clock, and
outages (fail fast without secrets, recover without reopening)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from kubebots.runtime.errors import RateLimitStorageError
from kubebots.runtime.ratelimit import Charge, Limit, RedisRateLimiter

from .private_redis import PrivateRedis

SECRET = "hunter2-redis-secret"


@pytest.fixture
async def limiter(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisRateLimiter]:
    opened = await RedisRateLimiter.open(redis_url, prefix=redis_prefix)
    yield opened
    await opened.close()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


async def test_keys_expire_with_the_window_and_share_a_slot(
    limiter: RedisRateLimiter, raw: aioredis.Redis, redis_prefix: str, client_id: str
) -> None:
    await limiter.admit(client_id, [Limit("tokens", 9, cost=0), Limit("requests", 5, cost=2)])
    await limiter.record(client_id, cost=3, window_seconds=0.5)
    keys = sorted(await raw.keys(f"{redis_prefix}*{client_id}*"))
    tag = f"{{{client_id}}}"
    assert keys == [
        f"{redis_prefix}rl:{tag}:requests:log",
        f"{redis_prefix}rl:{tag}:requests:sum",
        f"{redis_prefix}rl:{tag}:tokens:log",
        f"{redis_prefix}rl:{tag}:tokens:sum",
    ]
    assert 0 < await raw.pttl(keys[0]) <= 60_001
    assert 0 < await raw.pttl(keys[2]) <= 501
    await asyncio.sleep(0.6)  # an idle client's keys are gone
    assert sorted(await raw.keys(f"{redis_prefix}*{client_id}*")) == keys[:2]


async def test_ids_are_encoded_so_keys_never_collide(
    limiter: RedisRateLimiter, raw: aioredis.Redis, redis_prefix: str, client_id: str
) -> None:
    pairs = [
        (f"{client_id}:x", "s"),
        (client_id, "x:s"),
        (f"{client_id}}}{{", "s"),
        (client_id, "%"),
    ]
    for client, scope in pairs:
        assert (await limiter.acquire(client, limit=1, scope=scope)).allowed
    for client, scope in pairs:
        assert not (await limiter.acquire(client, limit=1, scope=scope)).allowed
    keys = await raw.keys(f"{redis_prefix}*")
    tags = {key[key.index("{") + 1 : key.index("}")] for key in keys if client_id in key}
    assert all("{" not in t and "}" not in t and ":" not in t for t in tags)


async def test_entries_are_stamped_by_the_server_clock(
    limiter: RedisRateLimiter, raw: aioredis.Redis, redis_prefix: str, client_id: str
) -> None:
    await limiter.acquire(client_id, limit=5)
    seconds, micros = await raw.time()
    entries = await raw.zrange(
        f"{redis_prefix}rl:{{{client_id}}}:requests:log", 0, -1, withscores=True
    )
    assert len(entries) == 1
    member, score = entries[0]
    assert 0 <= seconds * 1_000_000 + micros - score < 5_000_000
    assert member.startswith(f"{int(score)}:") and member.endswith(":1")


async def test_the_running_sum_follows_prunes(
    limiter: RedisRateLimiter, raw: aioredis.Redis, redis_prefix: str, client_id: str
) -> None:
    await limiter.record_many([Charge(client_id, "t", 5, 0.3), Charge(client_id, "t", 7, 0.3)])
    await asyncio.sleep(0.1)
    await limiter.record_many([Charge(client_id, "t", 11, 0.3)])
    await asyncio.sleep(0.25)  # the first two left the window, the third has not
    check = await limiter.admit(client_id, [Limit("t", 20, cost=0, window_seconds=0.3)])
    assert check.allowed and check.remaining == 9
    assert await raw.hget(f"{redis_prefix}rl:{{{client_id}}}:t:sum", "sum") == "11"


async def test_bad_prefixes_and_urls() -> None:
    for prefix in ("a{b", "}", "x" * 65, "a\x00b"):
        with pytest.raises(ValueError):
            await RedisRateLimiter.open("redis://127.0.0.1:6379", prefix=prefix)
    with pytest.raises(RateLimitStorageError, match="malformed") as info:
        await RedisRateLimiter.open(f"mysql://user:{SECRET}@127.0.0.1/0")
    assert SECRET not in str(info.value)


async def test_errors_hold_no_credentials() -> None:
    with PrivateRedis(password=SECRET) as server:
        wrong = "wrong-" + SECRET
        with pytest.raises(RateLimitStorageError) as info:
            await RedisRateLimiter.open(server.url(wrong))
        shown = f"{info.value} {info.value.__cause__} {info.value.detail}"
        assert SECRET not in shown
    with pytest.raises(RateLimitStorageError, match="Redis connection failed") as refused:
        await RedisRateLimiter.open(server.url())  # nobody listens there any more
    assert SECRET not in f"{refused.value} {refused.value.__cause__}"


async def _fails_fast(limiter: RedisRateLimiter, client_id: str) -> None:
    """Both calls fail with a RateLimitStorageError, quickly and without the password."""
    for call in (
        limiter.admit(client_id, [Limit("requests", 5)]),
        limiter.record_many([Charge(client_id, "tokens", 5)]),
    ):
        started = time.monotonic()
        with pytest.raises(RateLimitStorageError) as info:
            await call
        assert time.monotonic() - started < 2.0  # timeout 0.5 s, no retries: no hanging request
        assert SECRET not in f"{info.value} {info.value.__cause__} {info.value.detail}"
    assert limiter.problem is not None and SECRET not in limiter.problem


async def test_an_outage_fails_fast_and_heals_without_reopening(client_id: str) -> None:
    with PrivateRedis(password=SECRET) as server:
        limiter = await RedisRateLimiter.open(server.url(), max_connections=4)
        try:
            assert (await limiter.acquire(client_id, limit=1)).allowed
            assert limiter.problem is None
            # A server that accepts connections but never answers: the reply timeout fires.
            assert server.process is not None
            server.process.send_signal(signal.SIGSTOP)
            try:
                await _fails_fast(limiter, client_id)
            finally:
                server.process.send_signal(signal.SIGCONT)
            assert not (await limiter.acquire(client_id, limit=1)).allowed
            assert limiter.problem is None
            # A server that is gone: connections are refused.
            server.stop()
            await _fails_fast(limiter, client_id)
            # The same port again (empty, without the scripts): the first call succeeds.
            server.start()
            assert (await limiter.acquire(client_id, limit=1)).allowed
            assert not (await limiter.acquire(client_id, limit=1)).allowed
            await limiter.record_many([Charge(client_id, "tokens", 5)])
            assert limiter.problem is None
        finally:
            await limiter.close()


async def test_lost_scripts_are_loaded_again(client_id: str) -> None:
    with PrivateRedis(password=SECRET) as server:
        limiter = await RedisRateLimiter.open(server.url())
        try:
            async with aioredis.Redis.from_url(server.url()) as admin:
                await admin.script_flush()
                await limiter.record_many([Charge(client_id, "requests", 1)])
                await admin.script_flush()
                assert not (await limiter.acquire(client_id, limit=1)).allowed
        finally:
            await limiter.close()
