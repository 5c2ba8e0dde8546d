"""The decision behind the operator's ``/healthz``: alive while the API answered lately.

The API check and the clock are injected (a real implementation of each: a check that answers
or fails as told, a clock that moves when told). The kopf probes on top: test_handlers.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kubebots.operator.liveness import (
    ApiLiveness,
    ApiUnreachableError,
    OperatorStalledError,
    progress,
)
from kubebots.operator.reconcile import Applied, BotRef
from kubebots.operator.status_feed import StatusFeed, Timing
from kubebots.operator.tombstones import Tombstones
from kubebots.runtime.configstore import MemoryConfigStore, StoreError

from .support import Clock, FakeApiCheck, FakeSecretVersions, FakeStatusPatcher


def liveness(timeout: float = 60.0) -> tuple[ApiLiveness, FakeApiCheck, Clock]:
    api, clock = FakeApiCheck(), Clock()
    return ApiLiveness(api, timeout=timeout, clock=clock), api, clock


async def test_alive_while_the_api_answers() -> None:
    live, api, clock = liveness()
    assert await live.probe() == {"api": "ok"}
    clock.now += 3600
    assert await live.probe() == {"api": "ok"}
    assert api.calls == 2


async def test_a_short_outage_still_answers_200_and_says_what_failed() -> None:
    live, api, clock = liveness(timeout=60)
    await live.probe()
    api.error = ConnectionRefusedError(111, "Connection refused")
    clock.now += 59
    result = await live.probe()
    assert result["api"] == "unreachable"
    assert result["silent_seconds"] == 59
    assert "ConnectionRefusedError" in result["error"]


async def test_fails_once_the_api_has_been_silent_longer_than_the_timeout() -> None:
    live, api, clock = liveness(timeout=60)
    await live.probe()
    api.error = TimeoutError()
    clock.now += 61
    with pytest.raises(ApiUnreachableError, match=r"has not answered for 61s \(limit 60s\)"):
        await live.probe()
    # and keeps failing while the API stays silent
    clock.now += 20
    with pytest.raises(ApiUnreachableError, match="81s"):
        await live.probe()


async def test_recovers_as_soon_as_the_api_answers_again() -> None:
    live, api, clock = liveness(timeout=60)
    api.error = TimeoutError()
    clock.now += 120
    with pytest.raises(ApiUnreachableError):
        await live.probe()
    api.error = None
    assert await live.probe() == {"api": "ok"}
    assert live.last_answer == clock.now


async def test_the_start_counts_as_an_answer_then_a_never_reached_api_fails() -> None:
    """The DNS case of issue 11: the API never answered; /healthz must not say 200 forever."""
    live, api, clock = liveness(timeout=30)
    api.error = OSError("Name or service not known")
    clock.now += 10
    assert (await live.probe())["api"] == "unreachable"
    clock.now += 21
    with pytest.raises(ApiUnreachableError, match="Name or service not known"):
        await live.probe()


async def test_an_answer_that_is_an_error_is_no_answer_and_is_named_by_status() -> None:
    """A 401 (an expired token) means the operator cannot use the API either."""
    live, api, clock = liveness(timeout=5)
    api.error = ApiException(status=401, reason="Unauthorized")
    clock.now += 6
    with pytest.raises(ApiUnreachableError, match="HTTP 401 Unauthorized"):
        await live.probe()


# -- falling behind ---------------------------------------------------------------------------


class HangingStore(MemoryConfigStore):
    """Every delete hangs until ``release`` is set (a call that never returns), or fails while
    ``down`` (a store outage)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.down = False

    async def delete_many(self, bot_ids: Any) -> int:
        if self.down:
            raise StoreError("PostgreSQL connection failed: connection refused")
        await self.release.wait()
        return await super().delete_many(bot_ids)


def parts(clock: Clock, store: MemoryConfigStore) -> tuple[StatusFeed, Tombstones]:
    timing = Timing(fast=0.25, idle=2, drift=60, replica_max_age=15, retry=0.01)
    feed = StatusFeed(store, FakeStatusPatcher(), FakeSecretVersions(), timing, clock=clock)
    return feed, Tombstones(store, retry=0.01, clock=clock)


async def test_a_long_step_that_patches_is_progress_not_a_stall() -> None:
    clock, store = Clock(), MemoryConfigStore()

    class Slow:
        """Every status patch takes 1 s of the (test) clock and notes the feed's lag."""

        feed: StatusFeed | None = None
        worst = 0.0

        async def patch(self, namespace: str, name: str, status: Any) -> bool:
            assert self.feed is not None
            self.worst = max(self.worst, self.feed.lag()[0])
            clock.now += 1
            return True

        async def version(self, namespace: str, name: str, key: str) -> str:
            return "1"

    slow = Slow()
    timing = Timing(fast=0.25, idle=2, drift=600, replica_max_age=15, concurrency=1)
    feed = slow.feed = StatusFeed(store, slow, slow, timing, clock=clock)
    for i in range(300):
        ref = BotRef("ns", f"b{i}", f"u{i}", 1, {"llm": {"provider": "echo"}})
        feed.begin(ref)
        feed.track(ref, Applied(revision=1), {})
    await feed.step()
    assert clock.now >= 1300  # one step of 300 patches: 300 s
    assert slow.worst <= 1.0  # the lag never exceeded one patch: progress, not a stall


async def test_a_hanging_handler_fails_liveness() -> None:
    clock, store = Clock(), MemoryConfigStore()
    feed, _ = parts(clock, store)
    feed.begin(BotRef("ns", "b", "u", 1, {}))  # and never returns
    clock.now += 181
    feed.beat = clock.now  # the loop itself keeps stepping
    with pytest.raises(OperatorStalledError, match="a Bot handler has been running for 181s"):
        progress({"status": feed}, timeout=180)


async def test_tombstones_stuck_in_a_call_fail_liveness_a_store_outage_does_not() -> None:
    clock, store = Clock(), HangingStore()
    await store.put("ns:b", {"llm": {"provider": "echo"}}, generation=1, uid="u")
    _, tombstones = parts(clock, store)
    writer = asyncio.create_task(tombstones.run())
    asking = asyncio.create_task(tombstones.write("ns:b"))
    await asyncio.sleep(0.01)
    clock.now += 181  # the delete never returns
    with pytest.raises(OperatorStalledError, match="1 tombstone"):
        progress({"tombstones": tombstones}, timeout=180)
    store.release.set()
    await asyncio.wait_for(asking, 5)
    assert progress({"tombstones": tombstones}, timeout=180) == {"tombstones": 0.0}
    store.down = True  # an outage: every attempt fails at once and is retried
    await store.put("ns:c", {"llm": {"provider": "echo"}}, generation=1, uid="u")
    asking = asyncio.create_task(tombstones.write("ns:c"))
    await asyncio.sleep(0.05)
    clock.now += 181
    await asyncio.sleep(0.05)  # a retry since: that is progress, no restart would help
    assert progress({"tombstones": tombstones}, timeout=180)["tombstones"] < 1
    assert tombstones.waiting == 1 and not asking.done()
    store.down = False
    await asyncio.wait_for(asking, 5)
    assert await store.get("ns:c") is None
    writer.cancel()
