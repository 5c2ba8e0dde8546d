"""Counts and latencies of tool calls per bot, tool and outcome, for metrics.

The tool loop records here; the API's Prometheus collector reads :meth:`ToolStats.snapshot`, so
the tools layer never imports the API layer (as :mod:`kubebots.runtime.llm.stats`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

#: What became of one tool call.
ToolOutcome = Literal[
    "ok",  # the tool answered
    "error",  # the tool answered an error, or could not be reached
    "timeout",  # no answer within the tool's timeout or the turn's deadline
    "invalid",  # the model's call was unusable: unknown tool, arguments not a JSON object
    "rejected",  # the client rejected the call (approval)
]

#: Upper bounds (seconds) of the latency histogram's buckets.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(slots=True)
class ToolLatency:
    """A histogram of one tool's call latencies: cumulative-ready bucket counts, sum, count."""

    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        for index, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.buckets[index] += 1
                break
        self.total += seconds
        self.count += 1

    def copy(self) -> ToolLatency:
        return ToolLatency(list(self.buckets), self.total, self.count)


@dataclass(frozen=True, slots=True)
class ToolStatsSnapshot:
    calls: Mapping[tuple[str, str, ToolOutcome], int]
    latency: Mapping[tuple[str, str], ToolLatency]


class ToolStats:
    """Monotonic counters ``(bot, tool, outcome) -> calls`` and a latency histogram per
    ``(bot, tool)``; safe to read from another thread while the event loop records."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[tuple[str, str, ToolOutcome], int] = {}
        self._latency: dict[tuple[str, str], ToolLatency] = {}

    def record(self, bot_id: str, tool: str, outcome: ToolOutcome, seconds: float) -> None:
        key = (bot_id, tool, outcome)
        with self._lock:
            self._calls[key] = self._calls.get(key, 0) + 1
            self._latency.setdefault((bot_id, tool), ToolLatency()).observe(seconds)

    def snapshot(self) -> ToolStatsSnapshot:
        with self._lock:
            return ToolStatsSnapshot(
                dict(self._calls), {k: v.copy() for k, v in self._latency.items()}
            )
