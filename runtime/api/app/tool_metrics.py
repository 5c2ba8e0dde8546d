"""The tool loop's metrics: calls per bot, tool and outcome, and call latency per tool."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ...tools.stats import LATENCY_BUCKETS, ToolStats


class ToolCollector(Collector):
    """Read at scrape time from :class:`~kubebots.runtime.tools.stats.ToolStats`:
    ``kubebots_tool_calls_total{bot,tool,outcome}`` (outcome: ok, error, timeout, invalid,
    rejected) and ``kubebots_tool_call_duration_seconds{bot,tool}``."""

    def __init__(self, stats: ToolStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        snapshot = self._stats.snapshot()
        calls = CounterMetricFamily(
            "kubebots_tool_calls",
            "Server-side tool calls, by outcome",
            labels=["bot", "tool", "outcome"],
        )
        for (bot, tool, outcome), count in sorted(snapshot.calls.items()):
            calls.add_metric([bot, tool, outcome], count)
        yield calls
        latency = HistogramMetricFamily(
            "kubebots_tool_call_duration_seconds",
            "Server-side tool call latency",
            labels=["bot", "tool"],
        )
        for (bot, tool), histogram in sorted(snapshot.latency.items()):
            cumulative = list(accumulate(histogram.buckets))
            buckets = [
                (str(bound), n) for bound, n in zip(LATENCY_BUCKETS, cumulative, strict=True)
            ]
            buckets.append(("+Inf", histogram.count))
            latency.add_metric([bot, tool], buckets, histogram.total)
        yield latency
