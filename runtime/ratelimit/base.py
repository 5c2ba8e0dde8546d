"""The :class:`RateLimiter` base, its :class:`Limit`, :class:`Charge` and :class:`Decision`, and
the sliding-log rule every backend applies.

Every backend keeps an exact sliding log per ``(scope, client_id)``: entries ``(time, cost)``,
an entry counting while it is younger than ``window_seconds``. The rule for one :class:`Limit`,
for a call at ``now`` with ``used`` = the cost of the entries in ``(now - window, now]``: it
*allows* iff ``used + max(cost, 1) <= limit``. So for ``cost >= 1`` no window of
``window_seconds`` ever holds more than ``limit`` admitted cost, and ``cost=0`` is a pure *check*
allowing iff ``used < limit`` (a token budget).

* :meth:`RateLimiter.admit` is one atomic step for one client: every limit is checked against
  its scope's log; if all allow, each records its cost at ``now``; if one denies, nothing is
  recorded and the first denial is returned. Each scope appears at most once per call.
* :meth:`RateLimiter.record_many` adds each :class:`Charge`'s cost at ``now`` unconditionally (it
  may exceed a limit): the tokens of a finished turn, known only after the LLM answered.
* :meth:`RateLimiter.acquire` and :meth:`RateLimiter.record` are the one-limit, one-charge forms.

Token budgets therefore work as check-then-charge: before an LLM call,
``admit(client, [Limit("tokens", tpm, cost=0), Limit("requests", rpm)])`` refuses while the
tokens charged in the window are ``>= tpm`` (a request refused for tokens takes no request
slot); after it, ``record_many([Charge(client, "tokens", tokens_used)])``.

A denial's ``retry_after`` is the time until enough old cost leaves the window for the call to
fit (at least :data:`MIN_RETRY_AFTER`, at most ``window_seconds``), or ``None`` when it never can
(``cost > limit``). Use one ``window_seconds`` per scope: entries older than the window of the
latest call are pruned.

Arguments are checked here, alike for every backend (so backends are swappable); a backend
implements :meth:`RateLimiter._admit` and :meth:`RateLimiter._record_many` natively, in one
atomic step (one round trip to shared storage) each, and decides with :func:`verdict`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from ..persistence.checks import check_count, check_text

#: The smallest ``retry_after`` a denial reports, in seconds.
MIN_RETRY_AFTER: Final = 0.01


@dataclass(frozen=True, slots=True)
class Limit:
    """One check of an admission: at most ``limit`` cost of ``scope`` per ``window_seconds``.

    ``cost`` is recorded if the whole admission is allowed; ``cost=0`` is a pure check (a token
    budget: allows iff the cost recorded in the window is below ``limit``).
    """

    scope: str
    limit: int
    cost: int = 1
    window_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class Charge:
    """Cost recorded without a check (a finished turn's tokens)."""

    client_id: str
    scope: str
    cost: int
    window_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to :meth:`RateLimiter.admit` (and :meth:`RateLimiter.acquire`).

    ``scope`` and ``limit`` are those of the limit that decided: the first that denied, else
    the last one. ``remaining`` is the cost still admissible in its window after this call;
    ``retry_after`` (seconds) is ``None`` when allowed, or when the request can never fit.
    """

    allowed: bool
    remaining: int
    retry_after: float | None
    limit: int
    scope: str


class RateLimiter(ABC):
    """Per-client sliding-window limits. Failures raise ``kubebots.runtime.errors.StorageError``.

    The public methods check their arguments and call the backend's :meth:`_admit` /
    :meth:`_record_many` (see the module docs for the rule).
    """

    async def admit(self, client_id: str, limits: Sequence[Limit]) -> Decision:
        """One atomic step for ``client_id``: record every limit's cost iff all allow; else
        record nothing and return the first denial."""
        checked = check_limits(client_id, limits)
        return await self._admit(client_id, checked)

    async def record_many(self, charges: Sequence[Charge]) -> None:
        """Record every charge (of any clients) in one step; no charges: nothing happens."""
        checked = check_charges(charges)
        if checked:
            await self._record_many(checked)

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
        return await self.admit(client_id, [Limit(scope, limit, cost, window_seconds)])

    async def record(
        self, client_id: str, *, cost: int, window_seconds: float = 60.0, scope: str = "tokens"
    ) -> None:
        """Record ``cost`` now without checking any limit."""
        await self.record_many([Charge(client_id, scope, cost, window_seconds)])

    @abstractmethod
    async def _admit(self, client_id: str, limits: tuple[Limit, ...]) -> Decision:
        """:meth:`admit` with checked arguments: at least one limit, distinct scopes."""

    @abstractmethod
    async def _record_many(self, charges: tuple[Charge, ...]) -> None:
        """:meth:`record_many` with checked arguments: at least one charge, every cost > 0."""

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


def check_limits(client_id: str, limits: Sequence[Limit]) -> tuple[Limit, ...]:
    """``limits`` as a tuple if :meth:`RateLimiter.admit` accepts them, else TypeError or
    ValueError: at least one, each a :class:`Limit` with valid fields, no scope twice."""
    checked = tuple(limits)
    if not checked:
        raise ValueError("an admission needs at least one limit")
    scopes = set()
    for item in checked:
        if not isinstance(item, Limit):
            raise TypeError("limits must be Limit instances")
        check_args(client_id, item.scope, item.window_seconds, cost=item.cost, limit=item.limit)
        if item.scope in scopes:
            raise ValueError("each scope may appear once in an admission")
        scopes.add(item.scope)
    return checked


def check_charges(charges: Sequence[Charge]) -> tuple[Charge, ...]:
    """The charges of positive cost if every one is valid, else TypeError or ValueError."""
    checked = tuple(charges)
    for item in checked:
        if not isinstance(item, Charge):
            raise TypeError("charges must be Charge instances")
        check_args(item.client_id, item.scope, item.window_seconds, cost=item.cost)
    return tuple(item for item in checked if item.cost > 0)


def verdict(used: int, oldest: Iterable[tuple[float, int]], limit: Limit) -> Decision:
    """The rule for ``limit`` given ``used``, the cost of its live entries, and those entries
    ``(age_seconds, cost)`` oldest first.

    ``oldest`` is only read on a denial, and only until the entries read free enough cost for
    the call to fit: a backend may pass just those (every entry younger than the window).
    """
    cost, window = limit.cost, limit.window_seconds
    need = used + max(cost, 1) - limit.limit
    if need <= 0:
        return Decision(True, limit.limit - used - cost, None, limit.limit, limit.scope)
    remaining = max(0, limit.limit - used)
    if max(cost, 1) > limit.limit:
        return Decision(False, remaining, None, limit.limit, limit.scope)
    freed = 0
    retry_after = window
    for age, entry_cost in oldest:
        freed += entry_cost
        if freed >= need:
            retry_after = window - max(age, 0.0)
            break
    retry_after = min(max(retry_after, MIN_RETRY_AFTER), window)
    return Decision(False, remaining, retry_after, limit.limit, limit.scope)
