"""deploy/monitoring (the ServiceMonitor and the PrometheusRule) and the recommended
``app.kubernetes.io/*`` labels on everything deploy/ renders.

The rules are checked by the real ``promtool`` (Debian's ``prometheus`` package): ``check
rules`` on the PrometheusRule's groups, ``test rules`` with the unit tests in
tests/deploy/monitoring/ (each alert fires on the series that should raise it and stays quiet
on healthy ones; annotations render). Both objects are validated against the structure of their
kinds (tests/deploy/schemas/, as test_validate reads it), and every metric and label the rules
name is one the runtime exports: the app runs on loopback, answers a chat that calls an MCP
tool, and its ``/metrics`` is scraped.
"""

from __future__ import annotations

import asyncio
import copy
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from kubebots.runtime.configstore import open_config_store
from kubebots.runtime.configstore.rollout import ROLLOUT_ANNOTATION, RolloutState, candidate_id
from kubebots.runtime.testing import FakeOpenAIServer, ThreadedServer
from kubebots.runtime.testing.tool_servers import McpToolServer
from tests.api.app.conftest import HEADERS_A, put_bots, running_app
from tests.deploy.render import ROOT, render
from tests.deploy.test_validate import problems

DEPLOY = ROOT / "deploy"
MONITORING = DEPLOY / "monitoring"
UNIT_TESTS = Path(__file__).resolve().parent / "monitoring"
INSTALL_HINT = "install promtool: `apt-get install prometheus` (Debian's prometheus package)"
RECOMMENDED = ("name", "instance", "version", "component", "part-of", "managed-by")
#: Labels Prometheus (the ServiceMonitor's targets) adds to every scraped series.
TARGET_LABELS = {"namespace", "job", "pod", "service", "instance", "endpoint", "container"}
BOT = "default:tools"
SEVERITIES = {"critical", "warning", "info"}


def monitoring() -> list[dict[str, Any]]:
    return render(MONITORING).objects


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def rule_groups() -> dict[str, Any]:
    """The PrometheusRule's spec: a Prometheus rule file."""
    spec: dict[str, Any] = one(monitoring(), "PrometheusRule")["spec"]
    return spec


def alerts() -> list[dict[str, Any]]:
    return [rule for group in rule_groups()["groups"] for rule in group["rules"]]


@cache
def promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        raise AssertionError(f"promtool not found on PATH: {INSTALL_HINT}")
    return exe


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False
    )


def write_rules(directory: Path, groups: dict[str, Any]) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(groups, sort_keys=False))
    return path


# -- promtool --------------------------------------------------------------------------------


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    write_rules(tmp_path, rule_groups())
    result = run_promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    # The check is real: a PromQL syntax error fails it.
    groups = copy.deepcopy(rule_groups())
    groups["groups"][0]["rules"][0]["expr"] = "sum by (job (up)"
    write_rules(tmp_path, groups)
    result = run_promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_each_alert_fires_when_it_should_and_not_when_healthy(tmp_path: Path) -> None:
    # promtool compares annotations exactly: here the rules run without them.
    groups = copy.deepcopy(rule_groups())
    for rule in (r for g in groups["groups"] for r in g["rules"]):
        rule.pop("annotations")
    write_rules(tmp_path, groups)
    shutil.copy(UNIT_TESTS / "alerts.test.yaml", tmp_path)
    result = run_promtool("test", "rules", "alerts.test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_annotations_render(tmp_path: Path) -> None:
    write_rules(tmp_path, rule_groups())
    shutil.copy(UNIT_TESTS / "annotations.test.yaml", tmp_path)
    result = run_promtool("test", "rules", "annotations.test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_unit_tests_cover_every_alert_firing_and_quiet() -> None:
    cases = yaml.safe_load((UNIT_TESTS / "alerts.test.yaml").read_text())["tests"]
    checks = [check for case in cases for check in case["alert_rule_test"]]
    for alert in alerts():
        name = alert["alert"]
        fired = [c for c in checks if c["alertname"] == name and c["exp_alerts"]]
        quiet = [c for c in checks if c["alertname"] == name and not c["exp_alerts"]]
        assert fired and quiet, name
    assert {c["alertname"] for c in checks} == {a["alert"] for a in alerts()}


def test_every_alert_has_a_severity_a_summary_and_a_description() -> None:
    names = [alert["alert"] for alert in alerts()]
    assert len(names) == len(set(names))
    assert set(names) >= {
        "KubebotsHighErrorRate",
        "KubebotsHighLatency",
        "KubebotsBotsNotReady",
        "KubebotsReplicaBehindStore",
        "KubebotsToolErrors",
        "KubebotsLLMUpstreamErrors",
    }
    for alert in alerts():
        assert "record" not in alert
        assert alert["labels"]["severity"] in SEVERITIES, alert["alert"]
        assert set(alert["annotations"]) == {"summary", "description"}, alert["alert"]
        assert alert["for"], alert["alert"]  # no alert on a single evaluation's blip
        assert len(alert["annotations"]["description"]) > 100, alert["alert"]  # says what to do


# -- the objects ------------------------------------------------------------------------------


def test_the_monitoring_kustomization_renders_a_service_monitor_and_a_prometheus_rule() -> None:
    assert sorted(o["kind"] for o in monitoring()) == ["PrometheusRule", "ServiceMonitor"]
    for obj in monitoring():
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        assert obj["metadata"]["namespace"] == "kubebots-system"


@pytest.mark.parametrize("version", ["1.28", "1.33"])
def test_the_objects_match_the_structure_of_their_kinds(version: str) -> None:
    for obj in monitoring():
        assert problems(obj, version) == []


def test_the_structural_check_refuses_what_the_apiserver_would() -> None:
    monitor = one(monitoring(), "ServiceMonitor")
    typo = copy.deepcopy(monitor)
    typo["spec"]["endpoints"][0]["intervall"] = "30s"
    (problem,) = problems(typo, "1.33")
    assert "spec.endpoints.0: Additional properties are not allowed ('intervall'" in problem
    duration = copy.deepcopy(monitor)
    duration["spec"]["endpoints"][0]["interval"] = "30 seconds"
    (problem,) = problems(duration, "1.33")
    assert problem.startswith("monitoring.coreos.com/v1 ServiceMonitor/kubebots-runtime: spec")
    rule = copy.deepcopy(one(monitoring(), "PrometheusRule"))
    del rule["spec"]["groups"][0]["rules"][0]["expr"]
    (problem,) = problems(rule, "1.33")
    assert "spec.groups.0.rules.0: 'expr' is a required property" in problem


def test_the_service_monitor_scrapes_the_runtime_service() -> None:
    monitor = one(monitoring(), "ServiceMonitor")["spec"]
    objects = render(DEPLOY / "default").objects
    (service,) = [
        o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "kubebots-runtime"
    ]
    (runtime,) = [
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "kubebots-runtime"
    ]
    # It selects that Service (and no other: the operator has no metrics), in its own namespace.
    assert "namespaceSelector" not in monitor
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    others = [
        o
        for o in objects
        if o["kind"] == "Service" and o is not service
        if monitor["selector"]["matchLabels"].items() <= o["metadata"]["labels"].items()
    ]
    assert others == []
    (endpoint,) = monitor["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    annotations = runtime["spec"]["template"]["metadata"]["annotations"]
    assert endpoint["path"] == annotations["prometheus.io/path"] == "/metrics"
    # The rules' `job` is the Service's name (the Prometheus Operator's default job label).
    assert "jobLabel" not in monitor
    assert 'job="kubebots-runtime"' in rule_groups()["groups"][0]["rules"][0]["expr"]


# -- the metrics the rules name exist ----------------------------------------------------------


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, set[str]]]:
    """{sample name: label names} of the runtime's /metrics after a chat that calls a tool."""
    store = f"sqlite:{tmp_path_factory.mktemp('monitoring') / 'store.db'}"
    with FakeOpenAIServer() as fake, McpToolServer() as mcp:
        spec = {
            "llm": {"provider": "openai", "model": "fake-model", "baseUrl": fake.base_url},
            "tools": {"mcp": [{"name": "calc", "url": mcp.url, "allowedTools": ["add"]}]},
        }
        put_bots(store, "kubebots_", {BOT: spec})
        asyncio.run(rolled_back_candidate(store))
        with running_app(store, tool_egress="127.0.0.1") as server:
            yield scrape_after_a_chat(server)


async def rolled_back_candidate(url: str) -> None:
    """A rolled back rollout of the Bot (its candidate entry, weight 0), so the rollout metrics
    are exported."""
    store = await open_config_store(url, prefix="kubebots_")
    try:
        state = RolloutState("RolledBack", 1, 0, 0, False, 1, 0.0, "AnalysisFailed: test")
        await store.put(
            candidate_id(BOT),
            {"llm": {"provider": "echo"}},
            generation=2,
            uid="monitoring",
            annotations={ROLLOUT_ANNOTATION: state.to_annotation()},
        )
    finally:
        await store.close()


def scrape_after_a_chat(server: ThreadedServer) -> dict[str, set[str]]:
    reply = httpx.post(
        f"{server.url}/bots/{BOT}/chat",
        json={"conversation_id": "c1", "message": 'call add {"a": 1, "b": 2}'},
        headers=HEADERS_A,
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["response"].endswith("tool add: 3")
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    return found


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(kubebots_[a-z_]+)\b", expr))


def label_names(expr: str) -> set[str]:
    """The labels an expression matches on or groups by."""
    grouped = re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr)
    matched = re.findall(r"[{,]\s*([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", expr)
    return {n.strip() for group in grouped for n in group.split(",") if n.strip()} | set(matched)


def test_the_expression_parsers_find_metrics_and_labels() -> None:
    expr = 'sum by (job, route) (rate(kubebots_x_total{status=~"5..", a!="b"}[5m])) - on (job) up'
    assert metric_names(expr) == {"kubebots_x_total"}
    assert label_names(expr) == {"job", "route", "status", "a"}


def test_every_metric_and_label_the_rules_use_is_exported(scraped: dict[str, set[str]]) -> None:
    used: set[str] = set()
    for alert in alerts():
        expr = alert["expr"]
        names = metric_names(expr)
        if not names:  # the target's health, which Prometheus itself records
            assert expr.startswith('up{job="kubebots-runtime"}'), alert["alert"]
            continue
        for name in names:
            assert name in scraped, (alert["alert"], name, sorted(scraped))
        exported = set().union(*(scraped[n] for n in names)) | TARGET_LABELS
        assert label_names(expr) <= exported, (alert["alert"], label_names(expr) - exported)
        used |= names
    assert used == {
        "kubebots_http_requests_total",
        "kubebots_http_request_duration_seconds_bucket",
        "kubebots_bots_with_errors",
        "kubebots_store_synced_revision",
        "kubebots_tool_calls_total",
        "kubebots_llm_requests_total",
        "kubebots_rollout_weight_percent",
    }


# -- labels -----------------------------------------------------------------------------------


def kustomization(directory: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return loaded


def image_tag() -> str:
    (image,) = kustomization(DEPLOY / "default")["images"]
    return str(image["newTag"])


@pytest.mark.parametrize("name", ["default", "quickstart", "monitoring"])
def test_every_object_carries_the_recommended_labels(name: str) -> None:
    for obj in render(DEPLOY / name).objects:
        labels = obj["metadata"]["labels"]
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert {f"app.kubernetes.io/{k}" for k in RECOMMENDED} <= set(labels), where
        assert labels["app.kubernetes.io/name"] == "kubebots", where
        assert labels["app.kubernetes.io/part-of"] == "kubebots", where
        assert labels["app.kubernetes.io/instance"] == "kubebots", where
        assert labels["app.kubernetes.io/managed-by"] == "kustomize", where
        assert labels["app.kubernetes.io/version"] == image_tag(), where


@pytest.mark.parametrize("name", ["default", "quickstart"])
def test_pods_carry_them_but_the_version_and_selectors_stay_as_they_were(name: str) -> None:
    for obj in render(DEPLOY / name).objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        spec = obj.get("spec") or {}
        template = spec.get("template")
        if template:
            labels = template["metadata"]["labels"]
            assert {f"app.kubernetes.io/{k}" for k in RECOMMENDED} - set(labels) == {
                "app.kubernetes.io/version"  # a release must not change Jobs' templates
            }, where
            assert (
                labels["app.kubernetes.io/component"]
                == (obj["metadata"]["labels"]["app.kubernetes.io/component"])
            )
        for claim in spec.get("volumeClaimTemplates", []):
            assert "app.kubernetes.io/version" not in claim["metadata"]["labels"], where
        selector = spec.get("selector")
        if selector is not None:
            # Immutable (Deployments, StatefulSets): exactly what they have always been.
            assert selector.get("matchLabels", selector) == {
                "app.kubernetes.io/name": "kubebots",
                "app.kubernetes.io/component": obj["metadata"]["labels"][
                    "app.kubernetes.io/component"
                ],
            }, where


def test_the_version_label_is_the_image_tag_everywhere() -> None:
    for name in ("default", "quickstart", "monitoring"):
        k = kustomization(DEPLOY / name)
        pairs = [
            entry["pairs"] for entry in k["labels"] if "app.kubernetes.io/version" in entry["pairs"]
        ]
        (version,) = [p["app.kubernetes.io/version"] for p in pairs]
        assert version == image_tag(), name
        for image in k.get("images", []):
            assert image["newTag"] == version, name
