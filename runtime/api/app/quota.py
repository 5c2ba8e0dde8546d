"""Per-client quotas on the shared limiter: requests per minute and token budgets.

The request limit is the client's ``requestsPerMinute``, else ``KUBEBOTS_REQUESTS_PER_MINUTE``;
the token budget is the client's ``tokensPerMinute``. Admission is **one** limiter call per
request (:meth:`Quota.admit`): the budget check (cost 0: refused once the tokens charged in the
last minute reach the budget) and the request slot are decided in one atomic step, so a request
refused for tokens takes no slot. A turn's tokens are known only once the LLM answers: they are
charged afterwards, exactly once (:class:`~.charges.Charges`), so a client may overshoot its
budget by the turns it has in flight; its next request is then refused until enough usage leaves
the window.

When the limiter's storage fails, ``rate_limit_on_outage`` decides (:data:`OutagePolicy`):

* ``local`` (default): each replica enforces the same limits in its own memory until the storage
  answers again: the service stays up and a tenant stays bounded, by N times its limit on N
  replicas instead of its limit;
* ``open``: requests pass unlimited (the choice of Envoy's and Kong's defaults);
* ``closed``: requests are refused with 503 and ``Retry-After`` (no request without a verdict).

Every request decided without the shared storage is counted in
``kubebots_rate_limit_degraded_requests{policy}`` and logged at most once per
:data:`OUTAGE_LOG_INTERVAL` seconds.

:meth:`Quota.admit` returns the limiter's :class:`Decision` (a turn carries it as
``BotTurn.decision``): :func:`rate_limit_headers` turns it into OpenAI's
``x-ratelimit-*`` headers, which 429s carry too. The limiter answers for one limit: the one that
refused, else the request slot when the client has one (so a client with both limits gets the
``-requests`` headers, and the ``-tokens`` ones only when its budget refused it).
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Final, Literal

from ... import tracing
from ...errors import StorageError
from ...ratelimit import Decision, Limit, MemoryRateLimiter, RateLimiter
from ..http_errors import RateLimitError
from .charges import Charges
from .metrics import Metrics

if TYPE_CHECKING:  # security needs the state, which holds a Quota
    from .security import Caller

OutagePolicy = Literal["local", "open", "closed"]
#: Seconds between two warnings about the limiter's storage being away.
OUTAGE_LOG_INTERVAL: Final = 10.0
REQUESTS: Final = "requests"
TOKENS: Final = "tokens"

log = logging.getLogger("kubebots.runtime.api")


def _duration(seconds: float) -> str:
    """OpenAI's reset format: ``1s``, ``6m0s``, ``250ms``."""
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


def rate_limit_headers(decision: Decision, window_seconds: float = 60.0) -> dict[str, str]:
    """``x-ratelimit-{limit,remaining,reset}-{requests|tokens}`` for ``decision``. The reset is
    the time until the window holds nothing again: a whole window after an admitted request (its
    own slot is the newest entry; at most that for a budget), the retry time after a refusal."""
    suffix = decision.scope
    reset = window_seconds if decision.retry_after is None else decision.retry_after
    return {
        f"x-ratelimit-limit-{suffix}": str(decision.limit),
        f"x-ratelimit-remaining-{suffix}": str(max(0, decision.remaining)),
        f"x-ratelimit-reset-{suffix}": _duration(reset),
    }


class Quota:
    """Admits requests and charges tokens for the app; see the module docs."""

    def __init__(
        self,
        limiter: RateLimiter,
        metrics: Metrics,
        *,
        default_requests_per_minute: int | None = None,
        on_outage: OutagePolicy = "local",
    ) -> None:
        self._limiter = limiter
        self._metrics = metrics
        self._default_rpm = default_requests_per_minute
        self._on_outage: OutagePolicy = on_outage
        self._local = MemoryRateLimiter()  # the limits of policy "local" while storage is away
        self._charges = Charges(limiter, metrics, fallback=self._local)
        self._warned_at = -OUTAGE_LOG_INTERVAL

    def limits(self, caller: Caller, *, turn: bool) -> list[Limit]:
        """What a request of ``caller`` is checked against (``turn``: a chat turn, which spends
        tokens): the token budget first, then the request slot."""
        principal = caller.principal
        limits = []
        budget = principal.tokens_per_minute if principal else None
        if turn and budget is not None:
            limits.append(Limit(TOKENS, budget, cost=0))
        rpm = (principal.requests_per_minute if principal else None) or self._default_rpm
        if rpm is not None:
            limits.append(Limit(REQUESTS, rpm))
        return limits

    async def admit(self, caller: Caller, client_id: str, *, turn: bool) -> Decision | None:
        """Admit one request of ``client_id`` or raise a 429 :class:`RateLimitError` (or, with
        policy ``closed`` during an outage, the storage's 503 error). Returns the decision,
        ``None`` when nothing was checked (or the storage was away with policy ``open``)."""
        limits = self.limits(caller, turn=turn)
        if not limits:
            return None
        scopes = [limit.scope for limit in limits]
        with tracing.span(
            "kubebots.ratelimit.admit", {"kubebots.ratelimit.limits": scopes}
        ) as span:
            if turn and limits[0].scope == TOKENS:
                await self._charges.settled(client_id)  # its previous turns count
            decision: Decision | None
            try:
                decision = await self._limiter.admit(client_id, limits)
            except StorageError as exc:
                span.set_attribute("kubebots.ratelimit.degraded", self._on_outage)
                decision = await self._degraded(client_id, limits, exc)
            if decision is not None:
                span.set_attribute("kubebots.ratelimit.allowed", decision.allowed)
                if not decision.allowed:
                    span.set_attribute("kubebots.ratelimit.scope", decision.scope)
                    self._refuse(decision)
            return decision

    def charges_tokens(self, caller: Caller) -> bool:
        """Whether a turn of ``caller`` is charged (the client has a token budget)."""
        return caller.principal is not None and caller.principal.tokens_per_minute is not None

    def charge(self, caller: Caller, client_id: str, tokens: int) -> None:
        """Charge a finished turn's ``tokens`` to the client's budget, once (never raises: the
        turn is answered already; see :class:`~.charges.Charges`)."""
        if tokens > 0 and self.charges_tokens(caller):
            self._charges.add(client_id, TOKENS, tokens)

    async def close(self) -> None:
        """Send the charges still queued, then stop (the limiter is closed by its owner)."""
        await self._charges.close()
        await self._local.close()

    async def _degraded(
        self, client_id: str, limits: list[Limit], exc: StorageError
    ) -> Decision | None:
        """The decision without the shared storage (``None``: admitted unchecked)."""
        if self._on_outage == "closed":
            raise exc
        self._metrics.rate_limit_degraded.labels(policy=self._on_outage).inc()
        now = time.monotonic()
        if now - self._warned_at >= OUTAGE_LOG_INTERVAL:
            self._warned_at = now
            how = "in this replica's memory" if self._on_outage == "local" else "not at all"
            log.warning(
                "%s is unavailable (%s): rate limits are enforced %s until it answers "
                "(rate_limit_on_outage=%s)",
                exc.component,
                exc.message,
                how,
                self._on_outage,
            )
        if self._on_outage == "open":
            return None
        return await self._local.admit(client_id, limits)

    def _refuse(self, decision: Decision) -> None:
        self._metrics.rate_limited.labels(scope=decision.scope).inc()
        if decision.scope == TOKENS:
            message = f"token budget of {decision.limit} tokens per minute exceeded"
        else:
            message = f"rate limit of {decision.limit} requests per minute exceeded"
        error = RateLimitError(message=message, retry_after=decision.retry_after)
        error.headers = {**(error.headers or {}), **rate_limit_headers(decision)}
        raise error
