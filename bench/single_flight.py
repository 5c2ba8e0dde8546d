"""Single-flight creation: 100 concurrent ``get_or_create`` of one id must build one bot."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from kubebots.runtime import BotManager

from .backends import MEMORY_CONFIG, RUN_PREFIX

CONCURRENT_CALLERS = 100
LOADER_DELAY_S = 0.01


@dataclass(frozen=True)
class SingleFlight:
    callers: int
    builds: int
    distinct_bots: int

    @property
    def ok(self) -> bool:
        return self.builds == 1 and self.distinct_bots == 1


async def slow_loader(bot_id: str) -> dict[str, Any]:
    """An async config loader that awaits before answering, so callers pile up on the build."""
    await asyncio.sleep(LOADER_DELAY_S)
    return MEMORY_CONFIG


async def concurrent_builds() -> SingleFlight:
    async with BotManager(slow_loader) as manager:
        bot_id = f"{RUN_PREFIX}-single-flight"
        bots = await asyncio.gather(
            *(manager.get_or_create(bot_id) for _ in range(CONCURRENT_CALLERS))
        )
        return SingleFlight(CONCURRENT_CALLERS, manager.stats.builds, len({id(b) for b in bots}))
