"""``DynaBot.chat()`` latency with the echo provider, per storage backend."""

from __future__ import annotations

import time
from dataclasses import dataclass

from kubebots.runtime import BotContext, BotManager, DynaBot

from .backends import open_backend
from .stats import median, ns_to_ms, percentile

CHAT_TURNS = 2_000
CHAT_CONVERSATIONS = 100  # turns go round-robin: 20 turns per conversation
CHAT_WARMUP_TURNS = 50
MESSAGE = "Hello! Could you tell me how the weather looks for tomorrow's trip?"
CLIENT_ID = "bench-client"


@dataclass(frozen=True)
class ChatLatency:
    backend: str
    median_ms: float
    p99_ms: float
    turns: int


async def timed_chat(bot: DynaBot, context: BotContext) -> int:
    """One ``chat()`` turn; its wall time in nanoseconds."""
    start = time.perf_counter_ns()
    await bot.chat(MESSAGE, context)
    return time.perf_counter_ns() - start


async def chat_latency(backend_name: str) -> ChatLatency:
    async with open_backend(backend_name) as backend, BotManager() as manager:
        bot = await manager.get_or_create(backend.bot_id("chat"), backend.config)
        warm = BotContext(conversation_id="warmup", client_id=CLIENT_ID)
        for _ in range(CHAT_WARMUP_TURNS):
            await timed_chat(bot, warm)
        contexts = [
            BotContext(conversation_id=f"conv-{i}", client_id=CLIENT_ID)
            for i in range(CHAT_CONVERSATIONS)
        ]
        samples = [
            await timed_chat(bot, contexts[turn % CHAT_CONVERSATIONS]) for turn in range(CHAT_TURNS)
        ]
    return ChatLatency(
        backend_name, ns_to_ms(median(samples)), ns_to_ms(percentile(samples, 99)), CHAT_TURNS
    )
