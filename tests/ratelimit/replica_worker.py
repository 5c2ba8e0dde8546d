"""One "replica" of the exactness test: a process of its own with its own limiter, hammering one
client with concurrent calls. Run through ``multiprocessing`` (spawn), so it imports nothing
from the test process.

Its wall clock is skewed by ``skew`` seconds (``time.time`` patched in this process): the
limiters stamp entries with the server's clock, so the skew must change nothing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from threading import Barrier

from kubebots.runtime.ratelimit import Limit, PostgresRateLimiter, RateLimiter, RedisRateLimiter


@dataclass(frozen=True, slots=True)
class Job:
    backend: str  # "postgres" | "redis"
    url: str
    prefix: str
    client_id: str
    limit: Limit
    calls: int  # this replica's calls at most
    seconds: float  # ... and for this long at most after the start
    concurrency: int  # calls in flight at once
    skew: float  # seconds added to this process's wall clock


@dataclass(frozen=True, slots=True)
class Outcome:
    """One call: when it was sent and answered (``time.monotonic``, one clock for every process
    on the machine) and whether it was admitted."""

    sent: float
    answered: float
    allowed: bool


async def _open(job: Job) -> RateLimiter:
    if job.backend == "postgres":
        return await PostgresRateLimiter.open(job.url, prefix=job.prefix, pool_size=job.concurrency)
    return await RedisRateLimiter.open(job.url, prefix=job.prefix, max_connections=job.concurrency)


async def _hammer(job: Job, barrier: Barrier) -> list[Outcome]:
    limiter = await _open(job)
    outcomes: list[Outcome] = []
    left = job.calls
    deadline = 0.0

    async def worker() -> None:
        nonlocal left
        while left > 0 and time.monotonic() < deadline:
            left -= 1
            sent = time.monotonic()
            decision = await limiter.admit(job.client_id, [job.limit])
            outcomes.append(Outcome(sent, time.monotonic(), decision.allowed))

    try:
        await asyncio.to_thread(barrier.wait, 60)
        deadline = time.monotonic() + job.seconds
        await asyncio.gather(*(worker() for _ in range(job.concurrency)))
    finally:
        await limiter.close()
    return outcomes


def run(job: Job, barrier: Barrier) -> list[Outcome]:
    """The entry point in the replica's process."""
    real_time = time.time
    time.time = lambda: real_time() + job.skew  # type: ignore[assignment]
    return asyncio.run(_hammer(job, barrier))
