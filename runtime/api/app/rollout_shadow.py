"""Shadow turns: a Bot's candidate answers a copy of a stable turn, in the background, unseen.

While a Bot rolls out in shadow mode (``spec.rollout.shadow``), every turn is answered by the
stable generation, and the weight's share of them is also sent to the candidate once the stable
turn succeeded (:func:`~kubebots.runtime.routing.choose` marks them ``mirror``). The candidate
answers statelessly (``complete_messages``: the messages the stable bot's prompt had, nothing
stored, nothing returned) and the turn is counted as the candidate's ``shadow`` turn, so the
operator can judge the candidate before any client sees it.

Mirrors are bounded: at most ``limit`` run at once on this replica (a mirror costs an LLM call
the client does not wait for, and must never pile up behind a slow candidate); beyond that a
mirror is dropped and counted (:attr:`ShadowMirrors.dropped`). A mirror's failure is counted
and logged at debug level, never raised to anyone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("kubebots.runtime.api.shadow")


class ShadowMirrors:
    """The shadow turns in flight on this replica, at most ``limit`` (0: none run)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.dropped = 0  # mirrors not run: ``limit`` were in flight
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def start(self, mirror: Coroutine[Any, Any, None]) -> bool:
        """Run ``mirror`` in the background unless ``limit`` mirrors run already (then it is
        closed unrun and counted in :attr:`dropped`); whether it started."""
        if len(self._tasks) >= self.limit:
            mirror.close()
            self.dropped += 1
            return False
        task = asyncio.ensure_future(mirror)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return True

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("a shadow turn failed unexpectedly", exc_info=task.exception())

    async def wait(self) -> None:
        """Wait until every mirror started so far has ended (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel the mirrors in flight and wait for them (the app is shutting down)."""
        for task in list(self._tasks):
            task.cancel()
        await self.wait()
