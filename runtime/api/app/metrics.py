"""Prometheus metrics, on a registry of the app's own (several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ...llm.stats import LLMRequestStats
from ...manager import BotManager
from ...routing import RolloutCounters, RolloutTable
from ...sync import StoreSync
from .rollout_metrics import RolloutCollector
from .rollout_shadow import ShadowMirrors
from .tool_metrics import ToolCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _RuntimeCollector(Collector):
    """Read at scrape time: bots, reloads and how far this replica is behind the store."""

    def __init__(self, manager: BotManager, sync: StoreSync) -> None:
        self._manager = manager
        self._sync = sync

    def collect(self) -> Iterator[Metric]:
        stats = self._manager.stats
        yield GaugeMetricFamily(
            "kubebots_active_bots",
            "Bots loaded in this replica",
            value=self._manager.get_bot_count(),
        )
        for name, value, doc in (
            ("kubebots_bot_builds", stats.builds, "Bots built"),
            ("kubebots_bot_build_failures", stats.build_failures, "Bot builds that failed"),
            ("kubebots_bot_reloads", stats.reloads, "Bot reloads (config changes)"),
            ("kubebots_bot_evictions", stats.evictions, "Bots dropped by max_bots or idle_ttl"),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily(
            "kubebots_store_synced_revision",
            "Config store revision this replica has applied",
            value=self._sync.synced_revision,
        )
        yield GaugeMetricFamily(
            "kubebots_store_apply_lag_seconds",
            "From the last applied store write to its application here (store clock vs ours)",
            value=self._sync.last_lag_seconds,
        )
        yield GaugeMetricFamily(
            "kubebots_bots_with_errors",
            "Bots whose newest config failed to validate or build",
            value=len(self._sync.status),
        )


class _LLMCollector(Collector):
    """Read at scrape time: LLM calls per bot, endpoint (``model@host``) and outcome."""

    def __init__(self, stats: LLMRequestStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "kubebots_llm_requests",
            "Calls to LLM endpoints (a bot's own and its fallbacks), by outcome",
            labels=["bot", "endpoint", "outcome"],
        )
        for (bot, endpoint, outcome), count in sorted(self._stats.snapshot().items()):
            family.add_metric([bot, endpoint, outcome], count)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "kubebots_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kubebots_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "kubebots_rate_limited_requests",
            "Requests refused by a rate limit",
            ["scope"],
            registry=self.registry,
        )
        self.uncharged_turns = Counter(
            "kubebots_uncharged_turns",
            "Answered turns whose tokens could not be charged (the limiter's storage failed)",
            registry=self.registry,
        )
        self.rate_limit_degraded = Counter(
            "kubebots_rate_limit_degraded_requests",
            "Requests decided without the limiter's shared storage (it was unavailable), "
            "by rate_limit_on_outage policy",
            ["policy"],
            registry=self.registry,
        )

    def watch_runtime(self, manager: BotManager, sync: StoreSync) -> None:
        self.registry.register(_RuntimeCollector(manager, sync))
        self.registry.register(_LLMCollector(manager.factory.llm_stats))
        self.registry.register(ToolCollector(manager.factory.tool_stats))

    def watch_rollouts(
        self, rollouts: RolloutTable, counters: RolloutCounters, shadows: ShadowMirrors
    ) -> None:
        self.registry.register(RolloutCollector(rollouts, counters, shadows))
