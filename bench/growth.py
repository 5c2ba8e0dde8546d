"""Does a turn get slower as its conversation grows? Turn-200 vs turn-1 latency per backend.

Each of ``GROWTH_CONVERSATIONS`` conversations is played from turn 1 to ``GROWTH_TURNS`` in
order; every turn is timed. The "early" figure is the median over turns 1-10 of all
conversations, the "late" one the median over turns 191-200; ratio = late / early.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubebots.runtime import BotContext, BotManager

from .backends import open_backend
from .chat import CLIENT_ID, timed_chat
from .stats import median, ns_to_ms

GROWTH_CONVERSATIONS = 10
GROWTH_TURNS = 200
WINDOW_TURNS = 10  # turns 1-10 vs turns 191-200
WARMUP_TURNS = 20  # on a throw-away conversation before timing
RATIO_GOAL = 1.5


@dataclass(frozen=True)
class Growth:
    backend: str
    early_ms: float
    late_ms: float
    per_turn_ms: tuple[float, ...] = ()  # median over the conversations, turn 1 first

    @property
    def ratio(self) -> float:
        return self.late_ms / self.early_ms

    @property
    def ok(self) -> bool:
        return self.ratio <= RATIO_GOAL


async def turn_growth(backend_name: str) -> Growth:
    by_turn: list[list[int]] = [[] for _ in range(GROWTH_TURNS)]
    async with open_backend(backend_name) as backend, BotManager() as manager:
        bot = await manager.get_or_create(backend.bot_id("growth"), backend.config)
        warm = BotContext(conversation_id="growth-warmup", client_id=CLIENT_ID)
        for _ in range(WARMUP_TURNS):
            await timed_chat(bot, warm)
        for c in range(GROWTH_CONVERSATIONS):
            context = BotContext(conversation_id=f"growth-{c}", client_id=CLIENT_ID)
            for turn in range(GROWTH_TURNS):
                by_turn[turn].append(await timed_chat(bot, context))
    early = [ns for samples in by_turn[:WINDOW_TURNS] for ns in samples]
    late = [ns for samples in by_turn[-WINDOW_TURNS:] for ns in samples]
    per_turn = tuple(ns_to_ms(median(samples)) for samples in by_turn)
    return Growth(backend_name, ns_to_ms(median(early)), ns_to_ms(median(late)), per_turn)
