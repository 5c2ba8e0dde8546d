"""``BotManager.get_or_create`` costs: a cache hit, and building a new echo + memory bot."""

from __future__ import annotations

import time
from dataclasses import dataclass

from kubebots.runtime import BotManager

from .backends import MEMORY_CONFIG, RUN_PREFIX
from .stats import median, ns_to_us, percentile

CACHED_BATCHES = 200
CACHED_BATCH_SIZE = 1_000  # 200 x 1,000 = 200k cached calls
NEW_BOTS = 2_000
NEW_WARMUP = 50


@dataclass(frozen=True)
class OpCost:
    median_us: float
    p99_us: float
    ops: int


async def cached_get_or_create() -> OpCost:
    """µs per cached ``get_or_create(id)``: per-call mean of each batch, median over batches."""
    async with BotManager() as manager:
        bot_id = f"{RUN_PREFIX}-cached"
        await manager.get_or_create(bot_id, MEMORY_CONFIG)
        per_op: list[float] = []
        for _ in range(CACHED_BATCHES):
            start = time.perf_counter_ns()
            for _ in range(CACHED_BATCH_SIZE):
                await manager.get_or_create(bot_id)
            per_op.append((time.perf_counter_ns() - start) / CACHED_BATCH_SIZE)
    ops = CACHED_BATCHES * CACHED_BATCH_SIZE
    return OpCost(ns_to_us(median(per_op)), ns_to_us(percentile(per_op, 99)), ops)


async def new_bot_creation() -> OpCost:
    """µs per ``get_or_create(new_id, config)`` with echo + memory storage, timed per call."""
    async with BotManager() as manager:
        for i in range(NEW_WARMUP):
            await manager.get_or_create(f"{RUN_PREFIX}-warm-{i}", MEMORY_CONFIG)
        samples: list[float] = []
        for i in range(NEW_BOTS):
            bot_id = f"{RUN_PREFIX}-new-{i}"
            start = time.perf_counter_ns()
            await manager.get_or_create(bot_id, MEMORY_CONFIG)
            samples.append(time.perf_counter_ns() - start)
    return OpCost(ns_to_us(median(samples)), ns_to_us(percentile(samples, 99)), NEW_BOTS)
