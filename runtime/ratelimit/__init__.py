"""Per-client sliding-window rate limits and token budgets that hold across replicas.

:class:`RateLimiter` is the interface: :meth:`~RateLimiter.admit` checks a client's
:class:`Limit`\\ s in one atomic step (all record their cost, or none does, and the first denial
is the :class:`Decision`), :meth:`~RateLimiter.record_many` records :class:`Charge`\\ s without a
check (a finished turn's tokens); ``acquire`` and ``record`` are their one-limit forms. The rule
and how token budgets use it are described in :mod:`kubebots.runtime.ratelimit.base`.

Backends, all exact sliding logs:

* :class:`MemoryRateLimiter`: one process (N replicas would admit N times the limit);
* :class:`RedisRateLimiter`: any number of replicas sharing a Redis, one Lua script per call,
  stamped by Redis's clock;
* :class:`PostgresRateLimiter`: any number of replicas sharing a PostgreSQL database, one
  statement (a PL/pgSQL function) per call, stamped by the database's clock.

In both shared backends a call is one round trip, and one client's calls serialize only for the
server-side time of that step: "N replicas never admit more than the limit".
:class:`DeferredRateLimiter` opens a shared limiter on first use.
"""

from __future__ import annotations

from .base import MIN_RETRY_AFTER, Charge, Decision, Limit, RateLimiter
from .deferred import DeferredRateLimiter
from .memory import MemoryRateLimiter
from .postgres import PostgresRateLimiter
from .redis import RedisRateLimiter

__all__ = [
    "MIN_RETRY_AFTER",
    "Charge",
    "Decision",
    "DeferredRateLimiter",
    "Limit",
    "MemoryRateLimiter",
    "PostgresRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
]
