"""Per-client token budgets (``tokensPerMinute``): checked before a turn, charged after it.

A turn's cost is known only once the LLM answers, so a client may overshoot its budget by one
turn; the next request is then refused until enough usage leaves the one-minute window.
"""

from __future__ import annotations

from .errors import RateLimitError
from .security import Caller
from .state import RuntimeState


def _budget(caller: Caller) -> int | None:
    return caller.principal.tokens_per_minute if caller.principal else None


async def check_tokens(state: RuntimeState, caller: Caller, client_id: str) -> None:
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
    if _budget(caller) is not None and tokens > 0:
        await state.limiter.record(client_id, cost=tokens, scope="tokens")
