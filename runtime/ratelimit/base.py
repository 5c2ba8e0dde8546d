"""The :class:`RateLimiter` base, its :class:`Decision`, and the sliding-log rule it applies.

Every backend keeps an exact sliding log per ``(scope, client_id)``: entries ``(time, cost)``,
an entry counting while it is younger than ``window_seconds``. The rule, for a call at ``now``
with ``used`` = the cost of the entries in ``(now - window, now]``:

* :meth:`RateLimiter.acquire` admits iff ``used + max(cost, 1) <= limit`` and then records
  ``cost`` at ``now``. So for ``cost >= 1`` no window of ``window_seconds`` ever holds more than
  ``limit`` admitted cost, and ``cost=0`` is a pure *check* admitting iff ``used < limit``.
* :meth:`RateLimiter.record` adds ``cost`` at ``now`` unconditionally (it may exceed the limit).

Token budgets therefore work as check-then-record: before an LLM call,
``acquire(client, limit=tpm, cost=0, scope="tokens")`` denies while the tokens recorded in the
window are ``>= tpm``; after it, ``record(client, cost=tokens_used, scope="tokens")``. Check the
token budget before acquiring a request slot, so a request denied for tokens costs no slot.

A denial's ``retry_after`` is the time until enough old cost leaves the window for the call to
fit (at least :data:`MIN_RETRY_AFTER`, at most ``window_seconds``), or ``None`` when it never can
(``cost > limit``). Use one ``window_seconds`` per scope: entries older than the window of the
latest call are pruned.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Final, Protocol

from ..persistence.checks import check_count, check_text

#: The smallest ``retry_after`` a denial reports, in seconds.
MIN_RETRY_AFTER: Final = 0.01


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to :meth:`RateLimiter.acquire`.

    ``remaining`` is the cost still admissible in the window after this call; ``retry_after``
    (seconds) is ``None`` when allowed, or when the request can never fit the limit.
    """

    allowed: bool
    remaining: int
    retry_after: float | None
    limit: int


class Window(Protocol):
    """The log of one ``(scope, client_id)`` inside one atomic step of a backend, its entries
    older than the window already dropped."""

    async def ages(self) -> list[tuple[float, int]]:
        """``(age_seconds, cost)`` of the live entries, oldest first."""
        ...

    async def add(self, cost: int) -> None:
        """Record ``cost`` now."""
        ...


class RateLimiter(ABC):
    """Per-client sliding-window limits. Failures raise ``kubebots.runtime.errors.StorageError``.

    The rule (see the module docs) is applied here, the same for every backend; a backend
    supplies where the log lives: :meth:`_window`, one atomic step on one key's log.
    """

    async def acquire(
        self,
        client_id: str,
        *,
        limit: int,
        cost: int = 1,
        window_seconds: float = 60.0,
        scope: str = "requests",
    ) -> Decision:
        """Atomically admit and record ``cost`` iff ``used + max(cost, 1) <= limit``."""
        check_args(client_id, scope, window_seconds, cost=cost, limit=limit)
        async with self._window(scope, client_id, window_seconds) as log:
            ages = await log.ages()
            decision = decide(ages, limit=limit, cost=cost, window_seconds=window_seconds)
            if decision.allowed and cost > 0:
                await log.add(cost)
        return decision

    async def record(
        self, client_id: str, *, cost: int, window_seconds: float = 60.0, scope: str = "tokens"
    ) -> None:
        """Record ``cost`` now without checking any limit."""
        check_args(client_id, scope, window_seconds, cost=cost)
        async with self._window(scope, client_id, window_seconds) as log:
            if cost > 0:
                await log.add(cost)

    @abstractmethod
    def _window(
        self, scope: str, client_id: str, window_seconds: float
    ) -> AbstractAsyncContextManager[Window]:
        """One atomic step on the log of ``(scope, client_id)``: no other step on that key
        runs until it ends."""

    @abstractmethod
    async def close(self) -> None:
        """Release resources; later calls raise ``StorageError``. Idempotent."""


def _check_name(what: str, value: object) -> None:
    if not check_text(what, value):
        raise ValueError(f"{what} must not be empty")


def check_args(
    client_id: str, scope: str, window_seconds: float, *, cost: int, limit: int = 0
) -> None:
    """Reject arguments no backend accepts (the same for all, so backends are swappable)."""
    _check_name("client_id", client_id)
    _check_name("scope", scope)
    check_count("cost", cost)
    check_count("limit", limit)
    if isinstance(window_seconds, bool) or not isinstance(window_seconds, int | float):
        raise TypeError("window_seconds must be a number")
    if not (math.isfinite(window_seconds) and window_seconds > 0):
        raise ValueError("window_seconds must be positive and finite")


def decide(
    entries: Iterable[tuple[float, int]], *, limit: int, cost: int, window_seconds: float
) -> Decision:
    """Apply the sliding-log rule to the live ``(age_seconds, cost)`` entries, oldest first.

    Every entry must be younger than ``window_seconds``; the caller records ``cost`` if allowed.
    """
    live = list(entries)
    used = sum(c for _, c in live)
    need = used + max(cost, 1) - limit
    if need <= 0:
        return Decision(True, limit - used - cost, None, limit)
    remaining = max(0, limit - used)
    if max(cost, 1) > limit:
        return Decision(False, remaining, None, limit)
    freed = 0
    retry_after = window_seconds
    for age, entry_cost in live:
        freed += entry_cost
        if freed >= need:
            retry_after = window_seconds - max(age, 0.0)
            break
    return Decision(False, remaining, min(max(retry_after, MIN_RETRY_AFTER), window_seconds), limit)
