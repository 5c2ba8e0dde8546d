"""One replica's share of a steady load on a shared rate limiter, in its own OS process.

``python -m bench._limiter_load JSON`` opens the limiter the JSON names (:func:`open_limiter`),
waits until ``start_at`` (wall clock, shared by every replica) plus its ``offset_s``, then calls
``acquire(client, limit=..., window_seconds=...)`` every ``interval_s`` for ``duration_s`` (late
calls are not made up) and prints one JSON line: ``[[sent, received, allowed], ...]`` with
wall-clock times. :mod:`bench.production` starts several and checks what they admitted together.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from kubebots.runtime.ratelimit import PostgresRateLimiter, RateLimiter, RedisRateLimiter

BACKENDS = ("postgres", "redis")


async def open_limiter(backend: str, url: str, prefix: str) -> RateLimiter:
    """The shared limiter of ``backend`` at ``url``, its tables or keys under ``prefix``."""
    if backend == "postgres":
        return await PostgresRateLimiter.open(url, prefix=prefix)
    if backend == "redis":
        return await RedisRateLimiter.open(url, prefix=prefix)
    raise ValueError(f"backend must be one of {BACKENDS}")


async def run(job: dict[str, Any]) -> list[tuple[float, float, bool]]:
    limiter = await open_limiter(job["backend"], job["url"], job["prefix"])
    calls: list[tuple[float, float, bool]] = []
    try:
        first = job["start_at"] + job["offset_s"]
        end = job["start_at"] + job["duration_s"]
        k = 0
        while (due := first + k * job["interval_s"]) < end:
            await asyncio.sleep(max(0.0, due - time.time()))
            sent = time.time()
            decision = await limiter.acquire(
                job["client"], limit=job["limit"], window_seconds=job["window_s"]
            )
            calls.append((sent, time.time(), decision.allowed))
            k = max(k + 1, int((time.time() - first) / job["interval_s"]) + 1)
    finally:
        await limiter.close()
    return calls


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench._limiter_load JOB_JSON", file=sys.stderr)
        return 2
    print(json.dumps(asyncio.run(run(json.loads(argv[0])))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
