"""Per-client sliding-window rate limits that hold across replicas.

:class:`RateLimiter` applies the rule; :class:`MemoryRateLimiter` serves one process and
:class:`PostgresRateLimiter` any number of replicas sharing a database ("N replicas never admit N
times the limit"). The admission rule, and how token budgets are checked (``acquire`` with
``cost=0``, then ``record``), are described in :mod:`kubebots.runtime.ratelimit.base`.
"""

from __future__ import annotations

from .base import MIN_RETRY_AFTER, Decision, RateLimiter, Window
from .deferred import DeferredRateLimiter
from .memory import MemoryRateLimiter
from .postgres import PostgresRateLimiter

__all__ = [
    "MIN_RETRY_AFTER",
    "Decision",
    "DeferredRateLimiter",
    "MemoryRateLimiter",
    "PostgresRateLimiter",
    "RateLimiter",
    "Window",
]
