"""A resource opened on first use: failed opens are retried at most every ``retry_interval``.

The opener fails as a database that is not up does (a :class:`StorageError`), then opens; the
clock is injected where the retry interval matters.
"""

from __future__ import annotations

import asyncio

import pytest

from kubebots.runtime.errors import StorageError
from kubebots.runtime.persistence.deferred import Deferred

from .opener import Opener


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Resource:
    def __init__(self) -> None:
        self.closes = 0

    async def close(self) -> None:
        self.closes += 1


class DeferredResource(Deferred[Resource]):
    what = "test store"


def resource_opener(failures: int) -> Opener[Resource]:
    return Opener(Resource(), failures=failures)


async def test_fails_with_the_open_error_then_opens_once_the_database_is_up() -> None:
    opener, clock = resource_opener(failures=2), Clock()
    deferred = DeferredResource(opener, clock=clock)
    with pytest.raises(StorageError, match="attempt 1"):
        await deferred.opened()
    assert str(deferred.last_error) == "PostgreSQL connection failed: refused (attempt 1)"
    # within the retry interval: the last error at once, no new connection attempt
    clock.now += 0.5
    with pytest.raises(StorageError, match="attempt 1"):
        await deferred.opened()
    assert opener.attempts == 1
    clock.now += 0.6
    with pytest.raises(StorageError, match="attempt 2"):
        await deferred.opened()
    clock.now += 1.1
    assert await deferred.opened() is opener.value
    assert deferred.last_error is None
    assert await deferred.opened() is opener.value
    assert opener.attempts == 3


async def test_concurrent_first_calls_open_once() -> None:
    opener = resource_opener(failures=0)
    deferred = DeferredResource(opener)
    got = await asyncio.gather(*(deferred.opened() for _ in range(20)))
    assert all(r is opener.value for r in got)
    assert opener.attempts == 1


async def test_close_releases_once_and_nothing_opens_after() -> None:
    opener = resource_opener(failures=0)
    deferred = DeferredResource(opener)
    await deferred.opened()
    await deferred.close()
    await deferred.close()
    assert opener.value.closes == 1
    with pytest.raises(StorageError, match="the test store is closed"):
        await deferred.opened()


async def test_close_before_any_open_opens_nothing() -> None:
    opener = resource_opener(failures=0)
    deferred = DeferredResource(opener)
    await deferred.close()
    assert (opener.attempts, opener.value.closes) == (0, 0)


async def test_try_open_keeps_the_error_instead_of_raising() -> None:
    opener, clock = resource_opener(failures=1), Clock()
    deferred = DeferredResource(opener, clock=clock)
    assert await deferred.try_open() is False
    assert deferred.last_error is not None and "attempt 1" in deferred.last_error.message
    clock.now += 1.0
    assert await deferred.try_open() is True
    assert deferred.last_error is None
