"""The production section's own logic: configurations, the exactness counts, cgroup quotas.

The measurements run only under ``make bench`` (``python -m bench --only production``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bench import litellm
from bench import production as p
from bench.cgroup import Hierarchy, find_hierarchy, quota_us
from kubebots.runtime.api.app import RuntimeSettings
from kubebots.runtime.auth import KeyRing
from kubebots.runtime.schema import PostgresStorageConfig, SqliteStorageConfig, parse_bot_config

WHERE = p.Scratch("kubebots_bench_0a1b2c3d", "kbb0a1b2c3d_")


def test_max_in_window_counts_the_fullest_half_open_window() -> None:
    assert p.max_in_window([], 5.0) == 0
    assert p.max_in_window([0.0, 5.0], 5.0) == 1  # half-open: 5.0 is out of [0, 5)
    assert p.max_in_window([0.0, 1.0, 4.9, 5.0, 5.1], 5.0) == 4  # [1, 6)
    assert p.max_in_window([3.0, 0.0, 1.0, 2.0], 2.5) == 3  # unordered input
    assert p.max_in_window([1.0] * 4, 0.001) == 4


def test_admitted_share_is_relative_to_the_limit_over_the_run() -> None:
    assert p.admitted_share(600, 200, 5.0, 15.0) == pytest.approx(100.0)
    assert p.admitted_share(570, 200, 5.0, 15.0) == pytest.approx(95.0)


def test_exactness_counts_by_send_time_in_the_window_less_the_slowest_call() -> None:
    calls = [(0.0, 0.01, True), (4.985, 4.99, True), (5.0, 5.1, False), (9.0, 9.005, True)]
    e = p.Exactness("redis", calls, limit=2, window_s=5.0, duration_s=10.0)
    assert e.admitted == 3
    assert e.max_latency_s == pytest.approx(0.1)
    assert e.max_in_window == 2  # windows of 4.9 s: 0.0 and 4.985 are not in one
    assert e.share == pytest.approx(75.0)


def test_limiter_jobs_interleave_the_replicas_at_the_overload() -> None:
    jobs = [json.loads(p.limiter_job("postgres", WHERE, "c", n, 100.0)) for n in range(3)]
    total_rate = sum(1 / j["interval_s"] for j in jobs)
    assert total_rate == pytest.approx(p.OVERLOAD * p.EXACT_LIMIT / p.EXACT_WINDOW_S)
    offsets = [j["offset_s"] for j in jobs]
    assert offsets == sorted(offsets) and offsets[0] == 0 and offsets[-1] < jobs[0]["interval_s"]
    assert jobs[0]["url"] == WHERE.url
    assert json.loads(p.limiter_job("redis", WHERE, "c", 0, 0))["url"] == p.REDIS_URL


@pytest.mark.parametrize("config", p.CONFIGS, ids=lambda c: c.name)
def test_each_configuration_is_valid_runtime_settings(
    config: p.ServerConfig, tmp_path: Path
) -> None:
    settings = RuntimeSettings(**config.settings(tmp_path, WHERE))
    assert settings.auth is config.auth
    assert settings.table_prefix == WHERE.prefix
    assert settings.effective_rate_limit_backend() == config.limiter
    if config.limiter == "redis":
        assert settings.effective_redis_url() == p.REDIS_URL
    assert settings.store_url().startswith(
        "postgresql://" if config.store == "postgres" else "sqlite:"
    )


@pytest.mark.parametrize("config", p.CONFIGS, ids=lambda c: c.name)
def test_the_bot_keeps_conversations_in_the_configurations_database(
    config: p.ServerConfig,
) -> None:
    storage = parse_bot_config(config.spec(WHERE)).conversation_storage
    if config.store == "postgres":
        assert isinstance(storage, PostgresStorageConfig)
        assert storage.url == WHERE.url and f"search_path%3D{WHERE.schema}" in WHERE.url
    else:
        assert isinstance(storage, SqliteStorageConfig)


def test_production_keys_carry_both_limits_and_plain_keys_none() -> None:
    limited = KeyRing.load(json_text=json.dumps(p.keys(limits=True))).authenticate(p.API_KEY)
    assert limited is not None
    assert (limited.requests_per_minute, limited.tokens_per_minute) == (p.RPM, p.TPM)
    plain = KeyRing.load(json_text=json.dumps(p.keys(limits=False))).authenticate(p.API_KEY)
    assert plain is not None and plain.requests_per_minute is None


def test_figures_map_back_to_their_configuration() -> None:
    assert p.config_of_figure("production, limiter redis / embedded req/s, 16 conn") is (
        p.PRODUCTION_REDIS
    )
    assert p.config_of_figure("redis limiter, 3 replicas: max admitted in any window") is None


def test_litellm_production_config_has_master_key_limits_and_redis() -> None:
    config = yaml.safe_load(litellm.config_yaml("m", "hi", production=True))
    params = config["model_list"][0]["litellm_params"]
    assert (params["rpm"], params["tpm"]) == (litellm.RPM_LIMIT, litellm.TPM_LIMIT)
    assert config["general_settings"]["master_key"] == litellm.MASTER_KEY
    assert config["router_settings"]["redis_host"] == litellm.REDIS_HOST
    plain = yaml.safe_load(litellm.config_yaml("m", "hi"))
    assert "general_settings" not in plain and "rpm" not in plain["model_list"][0]["litellm_params"]


def test_cpu_quota_in_microseconds_per_period() -> None:
    assert quota_us(0.4) == 40_000
    assert quota_us(0.001) == 1000  # the kernel's floor
    with pytest.raises(ValueError, match="positive"):
        quota_us(0)


def test_the_cgroup_hierarchy_prefers_v2_with_cpu_and_falls_back_to_v1(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert find_hierarchy(tmp_path) == Hierarchy(tmp_path / "cpu", v2=False)
    unified = tmp_path / "unified"
    unified.mkdir()
    (unified / "cgroup.controllers").write_text("memory pids\n")
    assert not find_hierarchy(tmp_path).v2  # v2 without its cpu controller
    (unified / "cgroup.controllers").write_text("cpu memory pids\n")
    (unified / "cgroup.subtree_control").write_text("memory\n")
    assert find_hierarchy(tmp_path) == Hierarchy(unified, v2=True)
    assert (unified / "cgroup.subtree_control").read_text() == "+cpu\n"  # enabled for children


def test_a_v1_group_gets_period_and_quota(tmp_path: Path) -> None:
    Hierarchy(tmp_path, v2=False).limit(tmp_path, 0.4)
    assert (tmp_path / "cpu.cfs_quota_us").read_text() == "40000\n"
    Hierarchy(tmp_path, v2=True).limit(tmp_path, 0.5)
    assert (tmp_path / "cpu.max").read_text() == "50000 100000\n"
