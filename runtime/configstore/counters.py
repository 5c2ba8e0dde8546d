"""Per-generation turn counters: what a runtime replica measured of a Bot under rollout.

A replica counts the turns each generation of a Bot served during one step of a rollout (its
``window``, ``"<attempt>.<step>"``) and sends the counts with its replica report (batched, never
per request). The operator adds up the replicas' counts of a window and compares the candidate
with the stable generation (its analysis rules). Counts are cumulative within a
window on a replica; a replica that restarts loses its counts, it never counts twice.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

#: Upper bounds (milliseconds) of the latency buckets; the last bucket is unbounded.
LATENCY_BOUNDS_MS: Final = (
    1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 750,
    1000, 1500, 2000, 3000, 5000, 7500, 10000, 20000, 30000, 60000, 120000,
)  # fmt: skip
BUCKETS: Final = len(LATENCY_BOUNDS_MS) + 1


def bucket_of(latency_ms: float) -> int:
    """The latency bucket ``latency_ms`` falls in."""
    for index, bound in enumerate(LATENCY_BOUNDS_MS):
        if latency_ms <= bound:
            return index
    return len(LATENCY_BOUNDS_MS)


@dataclass(frozen=True, slots=True)
class GenerationCounters:
    """What one generation of a Bot served during one rollout window (on one replica, or
    added up over replicas)."""

    generation: int
    window: str  # "<attempt>.<step>" of the rollout state the turns were routed by
    shadow: bool = False  # mirrored turns (the replies went nowhere)
    turns: int = 0  # every turn that reached the model: answered or failed
    errors: int = 0  # turns that failed (the model, a timeout, a tool loop error)
    tokens: int = 0  # prompt + completion tokens of the answered turns
    flagged: int = 0  # answered turns whose reply the Bot's flag pattern matched
    #: answered turns per latency bucket (:data:`LATENCY_BOUNDS_MS`)
    latency: tuple[int, ...] = field(default=(0,) * BUCKETS)

    @property
    def key(self) -> tuple[int, str, bool]:
        return self.generation, self.window, self.shadow

    @property
    def answered(self) -> int:
        return self.turns - self.errors

    def plus(self, other: GenerationCounters) -> GenerationCounters:
        """The sum of two counts of the same key."""
        if other.key != self.key:
            raise ValueError("only counters of the same generation, window and kind add up")
        return replace(
            self,
            turns=self.turns + other.turns,
            errors=self.errors + other.errors,
            tokens=self.tokens + other.tokens,
            flagged=self.flagged + other.flagged,
            latency=tuple(a + b for a, b in zip(self.latency, other.latency, strict=True)),
        )

    @property
    def error_rate(self) -> float | None:
        """Failed turns per turn (None: no turn)."""
        return self.errors / self.turns if self.turns else None

    @property
    def flagged_rate(self) -> float | None:
        return self.flagged / self.answered if self.answered else None

    @property
    def tokens_per_turn(self) -> float | None:
        return self.tokens / self.answered if self.answered else None

    def latency_quantile_ms(self, q: float) -> float | None:
        """The ``q`` quantile of the answered turns' latency, interpolated in its bucket
        (None: no answered turn; the unbounded bucket reports its lower bound)."""
        total = sum(self.latency)
        if not total:
            return None
        rank = q * total
        seen = 0
        for index, count in enumerate(self.latency):
            if count and seen + count >= rank:
                lower = 0.0 if index == 0 else float(LATENCY_BOUNDS_MS[index - 1])
                if index == len(LATENCY_BOUNDS_MS):
                    return lower
                upper = float(LATENCY_BOUNDS_MS[index])
                return lower + (upper - lower) * max(0.0, rank - seen) / count
            seen += count
        return float(LATENCY_BOUNDS_MS[-1])

    @property
    def p95_ms(self) -> float | None:
        return self.latency_quantile_ms(0.95)


CounterKey = tuple[int, str, bool]


def add_up(counters: Iterable[GenerationCounters]) -> dict[CounterKey, GenerationCounters]:
    """Counters of the same key summed (over replicas)."""
    sums: dict[CounterKey, GenerationCounters] = {}
    for counter in counters:
        sums[counter.key] = sums[counter.key].plus(counter) if counter.key in sums else counter
    return sums


def check_counters(counters: Sequence[GenerationCounters]) -> None:
    """Raise TypeError/ValueError unless ``counters`` is storable: a tuple, each key once."""
    if not isinstance(counters, tuple):
        raise TypeError("a bot report's rollout counters must be a tuple")
    keys = set()
    for c in counters:
        if not isinstance(c, GenerationCounters):
            raise TypeError("a bot report's rollout counters must be GenerationCounters")
        values = (c.generation, c.turns, c.errors, c.tokens, c.flagged, *c.latency)
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values):
            raise ValueError("rollout counters must be non-negative ints")
        if len(c.latency) != BUCKETS or c.errors > c.turns or c.flagged > c.turns:
            raise ValueError("rollout counters are inconsistent")
        if not isinstance(c.window, str) or not c.window or len(c.window) > 64:
            raise ValueError("a rollout counter's window must be a short non-empty string")
        if c.key in keys:
            raise ValueError("a bot report must not count a generation's window twice")
        keys.add(c.key)


def encode_counters(counters: Sequence[GenerationCounters]) -> str | None:
    """Counters as compact JSON text (None for none)."""
    if not counters:
        return None
    rows = [
        [c.generation, c.window, c.shadow, c.turns, c.errors, c.tokens, c.flagged, list(c.latency)]
        for c in counters
    ]
    return json.dumps(rows, separators=(",", ":"))


def decode_counters(text: str | None) -> tuple[GenerationCounters, ...]:
    """:func:`encode_counters`'s text back as counters."""
    if not text:
        return ()
    decoded = []
    for generation, window, shadow, turns, errors, tokens, flagged, latency in json.loads(text):
        buckets = tuple(int(n) for n in latency)
        if len(buckets) != BUCKETS:  # written with other bounds: not comparable, left out
            continue
        decoded.append(
            GenerationCounters(
                int(generation),
                str(window),
                bool(shadow),
                int(turns),
                int(errors),
                int(tokens),
                int(flagged),
                buckets,
            )
        )
    return tuple(decoded)


def rate_percent(value: float | None) -> str:
    """``0.123`` as ``12.3%`` (``n/a`` for None), for status messages."""
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value * 100:.3g}%"
