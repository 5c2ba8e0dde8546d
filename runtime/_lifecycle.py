"""In-flight tracking and drain-then-release closing for a bot instance."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from .errors import BotClosedError


class Lifecycle:
    """Counts operations in flight; ``close`` waits for them, then runs ``release`` once.

    Operations may still start while the instance drains (a caller that fetched the bot just
    before a reload finishes its chat on it); they are refused only once resources are released.
    """

    __slots__ = (
        "_closed_event",
        "_closing",
        "_drained",
        "_inflight",
        "_release",
        "_released",
        "_task",
        "name",
    )

    def __init__(self, name: str, release: Callable[[], Awaitable[None]]) -> None:
        self.name = name
        self._release = release
        self._inflight = 0
        self._closing = False
        self._released = False
        self._drained: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed_event: asyncio.Event | None = None

    @property
    def inflight(self) -> int:
        return self._inflight

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def closed(self) -> bool:
        return self._released

    @contextmanager
    def operation(self) -> Iterator[None]:
        if self._released:
            raise BotClosedError(f"bot '{self.name}' is closed", detail={"bot_id": self.name})
        self._inflight += 1
        try:
            yield
        finally:
            self._inflight -= 1
            if self._inflight == 0 and self._drained is not None:
                self._drained.set()

    async def close(self) -> None:
        """Stop, drain, release. Safe to call many times and from many tasks."""
        self._closing = True
        if self._task is None or (self._task.cancelled() and not self._released):
            # (a close task cancelled before it ran, e.g. by a stopping loop, is started again)
            self._task = asyncio.ensure_future(self._drain_and_release())
        await asyncio.shield(self._task)

    async def wait_closed(self) -> None:
        """Wait until resources are released (by whoever calls :meth:`close`)."""
        if self._task is not None:
            await asyncio.shield(self._task)
            return
        if self._closed_event is None:
            self._closed_event = asyncio.Event()
        await self._closed_event.wait()
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _drain_and_release(self) -> None:
        if self._inflight:
            self._drained = asyncio.Event()
            await self._drained.wait()
        self._released = True
        try:
            await self._release()
        finally:
            if self._closed_event is not None:
                self._closed_event.set()
