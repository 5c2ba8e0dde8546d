"""Per-client limits on the shared limiter: requests per minute and token budgets.

The request limit is the client's ``requestsPerMinute``, else ``KUBEBOTS_REQUESTS_PER_MINUTE``.
A token budget (``tokensPerMinute``) is checked before a turn and charged after it: a turn's
cost is known only once the LLM answers, so a client may overshoot its budget by one turn; the
next request is then refused until enough usage leaves the one-minute window.
"""

from __future__ import annotations

from ..http_errors import RateLimitError
from .security import Caller
from .state import RuntimeState


async def limit_requests(state: RuntimeState, caller: Caller, client_id: str) -> None:
    """Count one request against the client's per-minute limit (shared across replicas)."""
    limit = caller.principal.requests_per_minute if caller.principal else None
    limit = limit or state.settings.requests_per_minute
    if limit is None:
        return
    decision = await state.limiter.acquire(client_id, limit=limit, scope="requests")
    if not decision.allowed:
        state.metrics.rate_limited.labels(scope="requests").inc()
        raise RateLimitError(
            message=f"rate limit of {limit} requests per minute exceeded",
            retry_after=decision.retry_after,
        )


def _budget(caller: Caller) -> int | None:
    return caller.principal.tokens_per_minute if caller.principal else None


async def check_tokens(state: RuntimeState, caller: Caller, client_id: str) -> None:
    """Refuse a turn once the client's token budget for the last minute is spent."""
    budget = _budget(caller)
    if budget is None:
        return
    decision = await state.limiter.acquire(client_id, limit=budget, cost=0, scope="tokens")
    if not decision.allowed:
        state.metrics.rate_limited.labels(scope="tokens").inc()
        raise RateLimitError(
            message=f"token budget of {budget} tokens per minute exceeded",
            retry_after=decision.retry_after,
        )


async def charge_tokens(state: RuntimeState, caller: Caller, client_id: str, tokens: int) -> None:
    """Record a finished turn's tokens against the client's budget."""
    if _budget(caller) is not None and tokens > 0:
        await state.limiter.record(client_id, cost=tokens, scope="tokens")
