"""The :class:`RateLimiter` protocol, its :class:`Decision`, and the sliding-log rule they share.

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
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

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


@runtime_checkable
class RateLimiter(Protocol):
    """Per-client sliding-window limits. Failures raise ``kubebots.runtime.errors.StorageError``."""

    async def acquire(
        self,
        client_id: str,
        *,
        limit: int,
        cost: int = 1,
        window_seconds: float = 60.0,
        scope: str = "requests",
    ) -> Decision:
        """Atomically admit and record ``cost`` if it fits ``limit`` (see the module docs)."""
        ...

    async def record(
        self, client_id: str, *, cost: int, window_seconds: float = 60.0, scope: str = "tokens"
    ) -> None:
        """Record ``cost`` now without checking any limit."""
        ...

    async def close(self) -> None:
        """Release resources. Idempotent."""
        ...


def _check_text(what: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str")
    if not value or "\x00" in value:
        raise ValueError(f"{what} must be non-empty and free of NUL characters")


def _check_int(what: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int")
    if value < 0:
        raise ValueError(f"{what} must not be negative")


def check_args(
    client_id: str, scope: str, window_seconds: float, *, cost: int, limit: int = 0
) -> None:
    """Reject arguments no backend accepts (the same for all, so backends are swappable)."""
    _check_text("client_id", client_id)
    _check_text("scope", scope)
    _check_int("cost", cost)
    _check_int("limit", limit)
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
