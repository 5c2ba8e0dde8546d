"""The side-by-side measures, each run on one :class:`~bench.peers.subjects.Subject`.

Sizes, messages and warm-ups are those of the single-side benchmarks (``bench.manager_ops``,
``bench.chat``, ``bench.growth``, ``bench.rss``, ``bench.single_flight``), so the kubebots
figures here are comparable with theirs. Every measure returns a JSON-ready dict.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ..backends import RUN_PREFIX
from ..chat import CHAT_CONVERSATIONS, CHAT_TURNS, CHAT_WARMUP_TURNS, MESSAGE
from ..growth import GROWTH_TURNS, WARMUP_TURNS
from ..manager_ops import CACHED_BATCH_SIZE, CACHED_BATCHES, NEW_BOTS, NEW_WARMUP
from ..rss import WARMUP_BOTS, vm_rss_kib
from ..single_flight import CONCURRENT_CALLERS, LOADER_DELAY_S
from ..stats import median, ns_to_ms, ns_to_us, percentile
from .subjects import Config, Loader, Subject

#: conversations played turn 1 -> 200 in ``turns`` (5: the peer's turn 200 costs ~0.25 s)
TURN_CONVERSATIONS = 5

Result = dict[str, Any]
#: Figure name -> (first, last) turn numbers (1-based, inclusive) whose samples are pooled.
TURN_WINDOWS = {  # 10 turns each, as bench.growth pools them for issue 2's ratio
    "turn_1_ms": (1, 10),
    "turn_50_ms": (46, 55),
    "turn_100_ms": (96, 105),
    "turn_200_ms": (191, 200),
}


@asynccontextmanager
async def opened(subject: Subject, loader: Loader | None = None) -> AsyncIterator[Subject]:
    """The subject with a fresh manager, closed (every bot closed too) on exit."""
    await subject.open(loader)
    try:
        yield subject
    finally:
        await subject.close()


async def cached(subject: Subject) -> Result:
    """µs per cached ``get_or_create(id)``: per-call mean of each batch, median/p99 over batches."""
    bot_id = f"{RUN_PREFIX}-cached"
    per_op: list[float] = []
    async with opened(subject):
        goc = subject.get_or_create
        await goc(bot_id, subject.config)
        for _ in range(CACHED_BATCHES):
            start = time.perf_counter_ns()
            for _ in range(CACHED_BATCH_SIZE):
                await goc(bot_id)
            per_op.append((time.perf_counter_ns() - start) / CACHED_BATCH_SIZE)
    return {
        "median_us": ns_to_us(median(per_op)),
        "p99_us": ns_to_us(percentile(per_op, 99)),
        "ops": CACHED_BATCHES * CACHED_BATCH_SIZE,
        "batches": CACHED_BATCHES,
        "batch_size": CACHED_BATCH_SIZE,
    }


async def new(subject: Subject) -> Result:
    """µs per ``get_or_create(new_id, config)`` (echo + memory), timed per call after warm-up."""
    samples: list[float] = []
    async with opened(subject):
        goc = subject.get_or_create
        for i in range(NEW_WARMUP):
            await goc(f"{RUN_PREFIX}-warm-{i}", subject.config)
        for i in range(NEW_BOTS):
            bot_id = f"{RUN_PREFIX}-new-{i}"
            start = time.perf_counter_ns()
            await goc(bot_id, subject.config)
            samples.append(time.perf_counter_ns() - start)
    return {
        "median_us": ns_to_us(median(samples)),
        "p99_us": ns_to_us(percentile(samples, 99)),
        "ops": NEW_BOTS,
        "warmup": NEW_WARMUP,
    }


async def _timed_chat(subject: Subject, bot: Any, context: Any) -> int:
    start = time.perf_counter_ns()
    await subject.chat(bot, MESSAGE, context)
    return time.perf_counter_ns() - start


async def chat(subject: Subject) -> Result:
    """ms per ``chat()`` (echo + memory), turns round-robin over the conversations, warmed up."""
    async with opened(subject):
        bot = await subject.get_or_create(f"{RUN_PREFIX}-chat", subject.config)
        warm = subject.context("warmup")
        for _ in range(CHAT_WARMUP_TURNS):
            await _timed_chat(subject, bot, warm)
        contexts = [subject.context(f"conv-{i}") for i in range(CHAT_CONVERSATIONS)]
        samples = [
            await _timed_chat(subject, bot, contexts[t % CHAT_CONVERSATIONS])
            for t in range(CHAT_TURNS)
        ]
    return {
        "median_ms": ns_to_ms(median(samples)),
        "p99_ms": ns_to_ms(percentile(samples, 99)),
        "turns": CHAT_TURNS,
        "conversations": CHAT_CONVERSATIONS,
        "warmup_turns": CHAT_WARMUP_TURNS,
    }


async def turns(subject: Subject) -> Result:
    """Latency by turn number: each conversation is played turn 1..N in order, every turn timed."""
    by_turn: list[list[int]] = [[] for _ in range(GROWTH_TURNS)]
    async with opened(subject):
        bot = await subject.get_or_create(f"{RUN_PREFIX}-turns", subject.config)
        warm = subject.context("turns-warmup")
        for _ in range(WARMUP_TURNS):
            await _timed_chat(subject, bot, warm)
        for c in range(TURN_CONVERSATIONS):
            context = subject.context(f"turns-{c}")
            for turn in range(GROWTH_TURNS):
                by_turn[turn].append(await _timed_chat(subject, bot, context))
    result: Result = {"per_turn_ms": [ns_to_ms(median(s)) for s in by_turn]}
    for key, (first, last) in TURN_WINDOWS.items():
        pooled = [ns for samples in by_turn[first - 1 : last] for ns in samples]
        result[key] = ns_to_ms(median(pooled))
    result["ratio_200_1"] = result["turn_200_ms"] / result["turn_1_ms"]
    result["window"] = "median over all conversations of turns " + ", ".join(
        f"{first}-{last}" for first, last in TURN_WINDOWS.values()
    )
    result.update(conversations=TURN_CONVERSATIONS, turns=GROWTH_TURNS)
    return result


async def rss(subject: Subject, bots: int) -> Result:
    """KiB of VmRSS per cached bot: ``bots`` built after ``WARMUP_BOTS`` and a baseline."""
    async with opened(subject):
        goc = subject.get_or_create
        for i in range(WARMUP_BOTS):
            await goc(f"{RUN_PREFIX}-rss-warm-{i}", subject.config)
        gc.collect()
        before = vm_rss_kib()
        for i in range(bots):
            await goc(f"{RUN_PREFIX}-rss-{i}", subject.config)
        gc.collect()
        after = vm_rss_kib()
        if subject.bot_count() != bots + WARMUP_BOTS:
            raise RuntimeError("bots were evicted during the RSS measurement")
    return {
        "bots": bots,
        "before_kib": before,
        "after_kib": after,
        "kib_per_bot": (after - before) / bots,
        "warmup_bots": WARMUP_BOTS,
    }


async def single_flight(subject: Subject) -> Result:
    """Concurrent ``get_or_create`` of one id through an async loader that sleeps first."""
    calls = 0

    async def slow_loader(bot_id: str) -> Config:
        nonlocal calls
        calls += 1
        await asyncio.sleep(LOADER_DELAY_S)
        return subject.config

    bot_id = f"{RUN_PREFIX}-single-flight"
    async with opened(subject, slow_loader):
        bots = await asyncio.gather(
            *(subject.get_or_create(bot_id) for _ in range(CONCURRENT_CALLERS))
        )
        distinct = len({id(b) for b in bots})
        counted = subject.builds()
        cached_after = subject.bot_count()
        del bots
    return {
        "callers": CONCURRENT_CALLERS,
        "loader_delay_s": LOADER_DELAY_S,
        "loader_calls": calls,
        "distinct_bots": distinct,
        "builds": distinct if counted is None else counted,
        "cached_after": cached_after,
        "how": (
            "builds = distinct bot objects returned to the callers (the library keeps no "
            "build counter; every returned object was constructed by DynaBot.from_config)"
            if counted is None
            else "builds = BotManager.stats.builds"
        ),
    }
