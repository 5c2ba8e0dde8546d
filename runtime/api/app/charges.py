"""Token charges, sent to the limiter off the request's path, each exactly once.

A turn's tokens are known only after its reply; awaiting the charge would add a limiter round
trip to every turn. :meth:`Charges.add` queues it instead, and one background task sends
everything queued in one :meth:`~kubebots.runtime.ratelimit.RateLimiter.record_many` call: at
one turn at a time that is one call per turn, sent right after the reply; under load the charges
of many turns share a call.

Each charge is handed to the limiter once and never retried: a call that fails may have been
applied, and a retry could charge a turn twice. It is then counted in
``kubebots_uncharged_turns`` and logged (the budget undercounts by those turns), and recorded in
the ``fallback`` limiter that enforces limits while the shared storage is away. A failed charge
never turns an answered turn into an error. :meth:`Charges.close` sends what is still queued.

A client's next admission first waits until its own charges are sent (:meth:`Charges.settled`):
a client that waits for each reply before its next request is checked against every turn it was
answered, as if the charge had been awaited in the turn (it rarely waits: its charge left when the
reply did). Only turns in flight at the same time can overshoot a budget.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from ..._supervise import outliving_defects
from ...errors import StorageError
from ...ratelimit import Charge, RateLimiter
from .metrics import Metrics

log = logging.getLogger("kubebots.runtime.api")


class Charges:
    """A queue of charges and the task that sends them (started on the first :meth:`add`)."""

    def __init__(self, limiter: RateLimiter, metrics: Metrics, *, fallback: RateLimiter) -> None:
        self._limiter = limiter
        self._metrics = metrics
        self._fallback = fallback
        self._queued: list[Charge] = []
        self._unsent: Counter[str] = Counter()  # client id -> charges queued or being sent
        self._sent = asyncio.Event()  # set (and replaced) each time a batch is done
        self._wake = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._closing = False

    def add(self, client_id: str, scope: str, cost: int) -> None:
        """Queue ``cost`` for ``client_id``'s ``scope``; it is sent soon, once."""
        if self._closing:
            raise RuntimeError("token charges are closed")
        self._queued.append(Charge(client_id, scope, cost))
        self._unsent[client_id] += 1
        self._wake.set()
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(
                self._send_forever(), name="kubebots-token-charges"
            )

    @property
    def pending(self) -> int:
        """Charges queued and not yet handed to the limiter."""
        return len(self._queued)

    async def settled(self, client_id: str) -> None:
        """Return once no charge of ``client_id`` is queued or being sent."""
        while self._unsent.get(client_id):
            await self._sent.wait()

    async def flush(self) -> None:
        """Send what is queued now (the sender task does this by itself)."""
        batch, self._queued = self._queued, []
        self._wake.clear()
        if not batch:
            return
        try:
            await self._send(batch)
        finally:
            self._unsent.subtract(c.client_id for c in batch)
            self._unsent = +self._unsent  # drop the zeros
            self._sent.set()
            self._sent = asyncio.Event()

    async def _send(self, batch: list[Charge]) -> None:
        try:
            await self._limiter.record_many(batch)
        except StorageError as exc:
            self._metrics.uncharged_turns.inc(len(batch))
            log.warning(
                "could not charge %d turn(s), %d tokens (%s is unavailable): %s",
                len(batch),
                sum(c.cost for c in batch),
                exc.component,
                exc.message,
            )
            await self._fallback.record_many(batch)

    async def close(self) -> None:
        """Send what is still queued, then stop the sender (never cancelled mid-call, so no
        charge is left half-sent). Idempotent."""
        self._closing = True
        self._wake.set()
        if self._sender is not None:
            await self._sender
            self._sender = None
        await self.flush()

    async def _send_forever(self) -> None:
        while not (self._closing and not self._queued):
            await self._wake.wait()
            with outliving_defects(log, "sending token charges failed"):
                await self.flush()
