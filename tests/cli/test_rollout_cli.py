"""``kubebots rollout status|promote|abort|retry`` on the real kube-apiserver.

One throwaway control plane for the module (tests/e2e/harness: etcd + kube-apiserver, a few
seconds to start), with the committed Bot CRD. The command reaches it through a kubeconfig, as a
user's shell does. There is no operator: where a test waits for an action's result, a thread
plays the operator's part over HTTP (it reads the annotation the command wrote and patches the
Bot's status as the operator would).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubebots.operator.rollout_cli import ACTION_ANNOTATION, add_parser
from tests.e2e.harness.controlplane import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "bots.kubebots.io.yaml"
NS = "default"
BOTS = f"/apis/kubebots.io/v1alpha1/namespaces/{NS}/bots"
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"

ROLLOUT: dict[str, Any] = {
    "phase": "Progressing",
    "step": 2,
    "steps": 3,
    "weight": 30,
    "shadow": False,
    "stableGeneration": 4,
    "candidateGeneration": 5,
    "attempt": 1,
    "stepStartedAt": "2026-12-06T02:00:00Z",
    "message": "step 2/3: 30% of new conversations, analysing",
    "analysis": {
        "candidate": {
            "turns": 40,
            "errors": 12,
            "errorRatePercent": 30.0,
            "p95Ms": 840.5,
            "tokensPerTurn": 1200.0,
        },
        "stable": {"turns": 120, "errors": 0, "errorRatePercent": 0.0, "p95Ms": 400.0},
    },
}
CONDITIONS = [
    {
        "type": "Ready",
        "status": "False",
        "reason": "RolloutInProgress",
        "message": "step 2/3",
        "lastTransitionTime": "2026-12-06T02:00:00Z",
    },
    {
        "type": "Progressing",
        "status": "True",
        "reason": "Analyzing",
        "message": "waiting for turns: 3 of 20",
        "lastTransitionTime": "2026-12-06T02:00:00Z",
    },
    {
        "type": "Degraded",
        "status": "False",
        "reason": "Healthy",
        "message": "every threshold holds",
        "lastTransitionTime": "2026-12-06T02:00:00Z",
    },
]


def bot_crd() -> dict[str, Any]:
    """The committed CRD. Until its status schema declares ``rollout`` (the operator's part
    of the feature), a schema keeping any ``rollout`` object is added, so the apiserver does
    not prune what these tests write; once declared, the committed schema is what is tested."""
    crd: dict[str, Any] = yaml.safe_load(CRD.read_text())
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    status["properties"].setdefault(
        "rollout", {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    )
    return crd


@pytest.fixture(scope="module")
def cp() -> Iterator[ControlPlane]:
    with ControlPlane() as plane:
        plane.kubectl("apply", "-f", "-", input=json.dumps(bot_crd()), check=True)
        plane.kubectl(
            "wait", "--for=condition=Established", "crd/bots.kubebots.io", "--timeout=60s"
        )
        deadline = time.monotonic() + 30
        while plane.request("GET", BOTS)[0] != 200:  # served once discovery caught up
            assert time.monotonic() < deadline, "the Bot resource is not served"
            time.sleep(0.1)
        yield plane


@dataclass
class Run:
    code: int
    out: str
    err: str


def kubebots_rollout(cp: ControlPlane, *argv: str, token: str | None = None) -> Run:
    """``kubebots rollout ARGV`` as the entry point registers it, with the kubeconfig of
    ``cp`` (another user's ``token`` if given) and a fast poll."""
    from kubebots.operator.rollout_cli import run_rollout

    parser = argparse.ArgumentParser(prog="kubebots")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["rollout", *argv])
    assert args.handler is run_rollout
    kubeconfig = cp.kubeconfig
    if token is not None:
        config = yaml.safe_load(kubeconfig.read_text())
        config["users"][0]["user"]["token"] = token
        kubeconfig = cp.workdir / f"kubeconfig-{token[-8:]}"
        kubeconfig.write_text(yaml.safe_dump(config))
    out, err = io.StringIO(), io.StringIO()
    env = {"KUBECONFIG": str(kubeconfig), "HOME": str(cp.workdir / "home")}
    code = run_rollout(args, env, interval=0.05, out=out, err=err)
    return Run(code, out.getvalue(), err.getvalue())


def make_bot(
    cp: ControlPlane, name: str, rollout: dict[str, Any] | None, conditions: list[Any] = CONDITIONS
) -> None:
    """A Bot with a rollout section, and the status the operator would have written."""
    body = {
        "apiVersion": "kubebots.io/v1alpha1",
        "kind": "Bot",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "llm": {"provider": "echo"},
            "rollout": {"steps": [{"weight": 10}, {"weight": 30}, {"weight": 60}]},
        },
    }
    status, created = cp.request("POST", BOTS, body)
    assert status == 201, created
    set_status(cp, name, {"rollout": rollout, "conditions": conditions})


def set_status(cp: ControlPlane, name: str, status: dict[str, Any]) -> None:
    code, body = cp.request(
        "PATCH",
        f"{BOTS}/{name}/status",
        {"status": status},
        content_type="application/merge-patch+json",
    )
    assert code == 200, body


def read_bot(cp: ControlPlane, name: str) -> dict[str, Any]:
    code, body = cp.request("GET", f"{BOTS}/{name}")
    assert code == 200, body
    return dict(body)


def annotation(cp: ControlPlane, name: str) -> str | None:
    value = (read_bot(cp, name)["metadata"].get("annotations") or {}).get(ACTION_ANNOTATION)
    return None if value is None else str(value)


def operator_answers(
    cp: ControlPlane, name: str, action: str, status: Callable[[], dict[str, Any]]
) -> threading.Thread:
    """A thread playing the operator: once the Bot's annotation asks ``action``, it patches
    the Bot's status with ``status()`` (after a moment, so the command really waits)."""

    def act() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            value = annotation(cp, name)
            if value is not None and value.startswith(action + " "):
                time.sleep(0.3)
                set_status(cp, name, status())
                return
            time.sleep(0.05)

    thread = threading.Thread(target=act, daemon=True)
    thread.start()
    return thread


# -- status --------------------------------------------------------------------------------------


def test_status_prints_the_step_the_share_the_figures_and_the_conditions(cp: ControlPlane) -> None:
    make_bot(cp, "canary", ROLLOUT)
    run = kubebots_rollout(cp, "status", "canary")
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0] == (
        "Bot default/canary: phase Progressing, step 2/3, 30% of new conversations to "
        "generation 5, stable generation 4, attempt 1"
    )
    assert "step started at 2026-12-06T02:00:00Z" in lines[1]
    assert lines[2].strip() == ROLLOUT["message"]
    table = {line.split()[0]: line.split()[-2:] for line in lines if line.startswith("  ")}
    assert lines[lines.index("analysis (last comparison):") + 1].split() == ["STABLE", "CANDIDATE"]
    assert table["generation"] == ["4", "5"]
    assert table["turns"] == ["120", "40"]
    assert table["errors"] == ["0", "12"]
    assert re.search(r"error rate\s+0%\s+30%$", run.out, re.M)
    assert re.search(r"p95 latency\s+400 ms\s+840.5 ms$", run.out, re.M)
    assert re.search(r"tokens/turn\s+-\s+1200$", run.out, re.M)
    assert re.search(r"flagged\s+-\s+-$", run.out, re.M)
    assert re.search(r"Progressing\s+True\s+Analyzing\s+waiting for turns: 3 of 20$", run.out, re.M)
    assert re.search(r"Degraded\s+False\s+Healthy\s+every threshold holds$", run.out, re.M)
    assert "Ready" not in table  # only the rollout's conditions


def test_status_json_is_the_raw_status_rollout_whatever_the_bot_is_called(
    cp: ControlPlane,
) -> None:
    shadow = {**ROLLOUT, "shadow": True, "analysis": {}}
    make_bot(cp, "shadowed", shadow)
    for argv in (
        ["shadowed", "-o", "json"],
        ["default/shadowed", "-o", "json"],
        ["default:shadowed", "-o", "json"],
        ["shadowed", "-n", "default", "-o", "json"],
    ):
        run = kubebots_rollout(cp, "status", *argv)
        assert run.code == 0, run.err
        assert json.loads(run.out) == shadow
    table = kubebots_rollout(cp, "status", "shadowed").out
    assert "shadow: 30% of turns mirrored to generation 5" in table
    assert "analysis" not in table  # no comparison yet


def test_a_missing_bot_a_bot_without_rollout_and_a_bad_name_are_errors(cp: ControlPlane) -> None:
    make_bot(cp, "steady", None, conditions=[])
    cases = {
        ("status", "nope"): "error: Bot default/nope not found",
        ("promote", "other/nope"): "error: Bot other/nope not found",
        ("status", "steady"): "error: Bot default/steady has no rollout",
        ("abort", "steady"): "error: Bot default/steady has no rollout",
        ("status", "a/b", "-n", "c"): "error: 'a/b' is in namespace 'a', not 'c'",
        ("status", "a:"): "error: not a Bot: 'a:'",
    }
    for argv, message in cases.items():
        run = kubebots_rollout(cp, *argv)
        assert (run.code, run.out) == (1, ""), argv
        assert run.err.startswith(message), (argv, run.err)
    assert annotation(cp, "steady") is None


def test_an_unauthorised_user_is_told_which_permission_is_missing(cp: ControlPlane) -> None:
    cp.kubectl("-n", NS, "create", "serviceaccount", "viewer", check=True)
    token = cp.service_account_token(NS, "viewer")
    run = kubebots_rollout(cp, "status", "canary-rbac", token=token)
    assert run.code == 1
    assert run.err.startswith("error: Bot default/canary-rbac: HTTP 403 Forbidden: ")
    assert "(grant `get` on bots.kubebots.io in default)" in run.err
    assert token not in run.err


# -- actions -------------------------------------------------------------------------------------


def test_promote_writes_the_annotation_once_per_request(cp: ControlPlane) -> None:
    make_bot(cp, "asked", ROLLOUT)
    run = kubebots_rollout(cp, "promote", "asked")
    assert run.code == 0, run.err
    value = annotation(cp, "asked")
    assert value is not None and re.fullmatch(f"promote {STAMP}", value)
    assert run.out == f"Bot default/asked: asked to promote ({ACTION_ANNOTATION}={value})\n"
    # the spec and status are untouched: only the annotation changed
    bot = read_bot(cp, "asked")
    assert bot["status"]["rollout"] == ROLLOUT and bot["metadata"]["generation"] == 1


def test_an_action_the_phase_does_not_admit_is_refused(cp: ControlPlane) -> None:
    make_bot(cp, "refused", ROLLOUT)
    run = kubebots_rollout(cp, "retry", "refused")
    assert run.code == 1
    assert run.err == (
        "error: Bot default/refused: cannot retry a rollout in phase Progressing "
        "(only when Aborted or RolledBack)\n"
    )
    assert annotation(cp, "refused") is None


def test_abort_waits_until_the_phase_is_aborted(cp: ControlPlane) -> None:
    make_bot(cp, "stopped", ROLLOUT)
    aborted = {**ROLLOUT, "phase": "Aborted", "weight": 0, "message": "Aborted: asked"}
    thread = operator_answers(cp, "stopped", "abort", lambda: {"rollout": aborted})
    run = kubebots_rollout(cp, "abort", "stopped", "--wait", "20")
    thread.join(timeout=20)
    assert run.code == 0, run.err
    asked, result = run.out.splitlines()
    assert asked.startswith("Bot default/stopped: asked to abort")
    assert result.startswith("Bot default/stopped: aborted (phase Aborted, step 2/3, 0% ")


def test_retry_waits_for_a_newer_attempt_and_times_out_without_one(cp: ControlPlane) -> None:
    rolled_back = {**ROLLOUT, "phase": "RolledBack", "weight": 0, "attempt": 2}
    make_bot(cp, "again", rolled_back)
    run = kubebots_rollout(cp, "retry", "again", "--wait", "0.3")  # nobody answers
    assert run.code == 1
    assert run.err == (
        "error: Bot default/again: retry not done after 0.3 s: phase RolledBack, step 2/3, 0% "
        "of new conversations to generation 5, stable generation 4, attempt 2; Ready False "
        "(RolloutInProgress: step 2/3)\n"
    )
    restarted = {**ROLLOUT, "step": 1, "weight": 10, "attempt": 3}
    thread = operator_answers(cp, "again", "retry", lambda: {"rollout": restarted})
    run = kubebots_rollout(cp, "retry", "default:again", "--wait", "20")
    thread.join(timeout=20)
    assert run.code == 0, run.err
    assert run.out.splitlines()[-1].endswith("attempt 3)")
    assert re.fullmatch(f"retry {STAMP}", annotation(cp, "again") or "")


def test_promote_waits_until_the_bot_is_ready(cp: ControlPlane) -> None:
    make_bot(cp, "promoted", ROLLOUT)

    def promoted() -> dict[str, Any]:
        ready = {**CONDITIONS[0], "status": "True", "reason": "Serving", "observedGeneration": 1}
        return {
            "rollout": {**ROLLOUT, "phase": "Promoted", "step": 3, "weight": 100},
            "conditions": [ready, *CONDITIONS[1:]],
        }

    thread = operator_answers(cp, "promoted", "promote", promoted)
    run = kubebots_rollout(cp, "promote", "promoted", "-n", "default", "--wait", "20")
    thread.join(timeout=20)
    assert run.code == 0, run.err
    assert run.out.splitlines()[-1] == (
        "Bot default/promoted: promoted (phase Promoted, step 3/3, 100% of new conversations "
        "to generation 5, stable generation 4, attempt 1)"
    )
