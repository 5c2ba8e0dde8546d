"""The rollouts' metrics, read at scrape time from the routing table and the turn counters."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ...routing import RolloutCounters, RolloutTable
from .rollout_shadow import ShadowMirrors


class RolloutCollector(Collector):
    """``kubebots_rollout_turns_total{bot,generation,role,outcome}`` (role: stable, candidate,
    shadow; outcome: ok, error, flagged; monotonic until the Bot's rollout ends),
    ``kubebots_rollout_weight_percent{bot}`` (the candidate's share; 0 once rolled back) and
    ``kubebots_rollout_mirrors_dropped_total`` (shadow turns not run: the replica's bound)."""

    def __init__(
        self, rollouts: RolloutTable, counters: RolloutCounters, shadows: ShadowMirrors
    ) -> None:
        self._rollouts = rollouts
        self._counters = counters
        self._shadows = shadows

    def collect(self) -> Iterator[Metric]:
        turns = CounterMetricFamily(
            "kubebots_rollout_turns",
            "Turns of Bots under rollout, by generation, role and outcome",
            labels=["bot", "generation", "role", "outcome"],
        )
        for (bot, generation, role, outcome), count in sorted(self._counters.totals().items()):
            turns.add_metric([bot, str(generation), role, outcome], count)
        yield turns
        weight = GaugeMetricFamily(
            "kubebots_rollout_weight_percent",
            "The share of new conversations (shadow: of turns mirrored) given to the candidate",
            labels=["bot"],
        )
        for bot in self._rollouts.bots():
            rollout = self._rollouts.get(bot)
            if rollout is not None:
                weight.add_metric([bot], rollout.state.weight if rollout.state.active else 0)
        yield weight
        yield CounterMetricFamily(
            "kubebots_rollout_mirrors_dropped",
            "Shadow turns not run: the replica ran its bound of them already",
            value=self._shadows.dropped,
        )
