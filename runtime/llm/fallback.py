"""A provider over a bot's endpoints: its own, then its ``llm.fallbacks``, in order.

:class:`FallbackProvider` asks the first endpoint that is not cooling down and moves to the next
when it is rate limited (429), fails (5xx, connection, broken stream) or times out
(:data:`FALLBACK_ERRORS`); never after a 400 (the request cannot succeed anywhere) nor a
refused key or model (the bot's configuration is wrong, and hiding that would hide it for good).
A stream falls back only before its first delta: what a client already received cannot be
taken back.

An endpoint that failed so is skipped for ``cooldown`` seconds; when every endpoint is cooling
down they are all tried in order anyway (a guess beats a certain failure). A 429 without a
``Retry-After`` gets one computed per endpoint: 1 s, doubling with each consecutive 429 of
that endpoint, at most 30 s; an answer resets it. Every call to an endpoint is counted in
:class:`~.stats.LLMRequestStats` under the endpoint's ``model@host`` label.

With a single endpoint this is the plain provider plus those counts and the computed
``Retry-After``; the factory wraps every ``openai`` bot's provider in one.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from ..errors import (
    LLMError,
    LLMTimeoutError,
    LLMUnavailableError,
    RateLimitError,
)
from .base import ChatMessage, Completion, Delta, LLMProvider, Settings, UsageSink
from .stats import LLMRequestStats, Outcome, outcome_of

log = logging.getLogger("kubebots.runtime.llm")

#: The errors after which the next endpoint is tried.
FALLBACK_ERRORS: tuple[type[LLMError], ...] = (
    RateLimitError,
    LLMUnavailableError,
    LLMTimeoutError,
)
#: Seconds an endpoint that failed is skipped, by default.
DEFAULT_COOLDOWN = 30.0
#: The computed ``Retry-After`` of an endpoint's first 429 in a row, and its ceiling.
FIRST_RETRY_AFTER = 1.0
MAX_RETRY_AFTER = 30.0


def backoff(consecutive_429s: int) -> float:
    """The computed ``Retry-After`` after ``consecutive_429s`` (>= 1) 429s in a row."""
    exponent = min(max(consecutive_429s, 1) - 1, 32)
    return min(MAX_RETRY_AFTER, FIRST_RETRY_AFTER * 2.0**exponent)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One endpoint: its provider and its metrics label (``model@host``, never a key)."""

    label: str
    provider: LLMProvider


@dataclass(slots=True)
class _Health:
    cooling_until: float = -math.inf
    consecutive_429s: int = 0


class FallbackProvider:
    """The :class:`~.base.LLMProvider` over ``endpoints`` (tried in order); owns and closes
    their providers. ``served_by`` is the label of the endpoint that answered last."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        bot_id: str,
        stats: LLMRequestStats | None = None,
        cooldown: float = DEFAULT_COOLDOWN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not endpoints:
            raise ValueError("FallbackProvider needs at least one endpoint")
        self._endpoints = tuple(endpoints)
        self._health = [_Health() for _ in self._endpoints]
        self._bot_id = bot_id
        self._stats = stats
        self._cooldown = cooldown
        self._clock = clock
        self._closed = False
        self.served_by: str | None = None
        self._served_index = 0  # the index of the endpoint behind served_by

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._endpoints

    @property
    def serving_fallback(self) -> str | None:
        """``served_by`` when that is one of the fallbacks (not the first endpoint), else None."""
        return self.served_by if self._served_index else None

    async def complete(
        self, messages: Sequence[ChatMessage], *, settings: Settings | None = None
    ) -> Completion:
        """The first endpoint's reply that comes (see the module's docstring for the order)."""
        self._check_open()
        failure: LLMError | None = None
        for index in self._order():
            provider = self._endpoints[index].provider
            try:
                completion = await provider.complete(messages, settings=settings)
            except LLMError as exc:
                failure = self._failed(index, exc)
                if not isinstance(failure, FALLBACK_ERRORS):
                    break
                continue
            self._answered(index)
            return completion
        assert failure is not None  # _order() is never empty
        raise failure

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        settings: Settings | None = None,
        on_usage: UsageSink | None = None,
    ) -> AsyncIterator[Delta]:
        """The first endpoint's stream that starts; after its first delta there is no going
        back (a later failure is raised as it is)."""
        self._check_open()
        failure: LLMError | None = None
        for index in self._order():
            deltas = self._endpoints[index].provider.stream(
                messages, settings=settings, on_usage=on_usage
            )
            started = False
            try:
                async for delta in deltas:
                    started = True
                    yield delta
            except LLMError as exc:
                failure = self._failed(index, exc)
                if started or not isinstance(failure, FALLBACK_ERRORS):
                    break
                continue
            except (GeneratorExit, asyncio.CancelledError):
                self._record(index, "abandoned")
                raise
            finally:
                await _close(deltas)
            self._answered(index)
            return
        assert failure is not None  # _order() is never empty
        raise failure

    async def close(self) -> None:
        """Close every endpoint's provider. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for endpoint in self._endpoints:
            await endpoint.provider.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise LLMUnavailableError(f"the LLM provider of bot {self._bot_id!r} was closed")

    def _order(self) -> list[int]:
        """Endpoints not cooling down, in order; all of them if every one is."""
        now = self._clock()
        ready = [i for i, health in enumerate(self._health) if health.cooling_until <= now]
        return ready or list(range(len(self._endpoints)))

    def _answered(self, index: int) -> None:
        self._health[index] = _Health()
        self.served_by = self._endpoints[index].label
        self._served_index = index
        self._record(index, "ok")

    def _failed(self, index: int, error: LLMError) -> LLMError:
        """Count the failure, start the endpoint's cooldown if it is one to fall back on, and
        return the error to raise (a 429 gets its computed ``Retry-After``)."""
        self._record(index, outcome_of(error))
        health = self._health[index]
        if isinstance(error, RateLimitError):
            health.consecutive_429s += 1
            if error.retry_after is None:
                error = error.with_retry_after(backoff(health.consecutive_429s))
        if isinstance(error, FALLBACK_ERRORS):
            health.cooling_until = self._clock() + self._cooldown
            if len(self._endpoints) > 1:
                log.warning(
                    "bot %r: LLM endpoint %s failed (%s); skipped for %gs while others answer",
                    self._bot_id,
                    self._endpoints[index].label,
                    outcome_of(error),
                    self._cooldown,
                )
        return error

    def _record(self, index: int, outcome: Outcome) -> None:
        if self._stats is not None:
            self._stats.record(self._bot_id, self._endpoints[index].label, outcome)


async def _close(deltas: AsyncIterator[Delta]) -> None:
    """Close an endpoint's stream (an async generator) so its connection is released now."""
    aclose = getattr(deltas, "aclose", None)
    if aclose is not None:
        await aclose()
