"""deploy/argocd/bot-health.lua, run by a real Lua 5.1 (Argo CD's gopher-lua speaks 5.1)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

from kubebots.operator.reconcile import Applied, BotRef
from kubebots.operator.status import status_patch
from kubebots.runtime.configstore.rollout import Phase, RolloutState
from kubebots.runtime.configstore.serving import Serving
from kubebots.runtime.schema import RolloutConfig

ARGOCD = Path(__file__).resolve().parents[2] / "deploy" / "argocd"
SCRIPT = (ARGOCD / "bot-health.lua").read_text(encoding="utf-8")


def to_lua(lua: Any, value: Any) -> Any:
    """A JSON-like Python value as Argo CD hands it to the script: dicts and lists become tables
    (lists 1-indexed), ``None`` becomes nil (the key is left out)."""
    if isinstance(value, dict):
        table = lua.table()
        for key, item in value.items():
            if item is not None:
                table[key] = to_lua(lua, item)
        return table
    if isinstance(value, list):
        table = lua.table()
        for index, item in enumerate(value, start=1):
            table[index] = to_lua(lua, item)
        return table
    return value


def health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = to_lua(lua, obj)
    hs = lua.execute(SCRIPT)
    return hs["status"], hs["message"]


def bot(generation: int = 3, status: dict[str, Any] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "kubebots.io/v1alpha1",
        "kind": "Bot",
        "metadata": {"name": "support", "namespace": "default", "generation": generation},
        "spec": {"llm": {"provider": "echo"}},
    }
    if status is not None:
        obj["status"] = status
    return obj


def cond(type_: str, status: str, message: str = "", reason: str = "R") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": 3,
        "lastTransitionTime": "2024-01-01T00:00:00Z",
    }


def status(observed: int | None, *conditions: dict[str, Any]) -> dict[str, Any]:
    return {
        "observedGeneration": observed,
        "botId": "default:support",
        "revision": 17,
        "replicas": 2,
        "servedReplicas": 2,
        "served": "2/2",
        "conditions": list(conditions),
    }


def test_healthy_when_ready_for_the_current_generation() -> None:
    obj = bot(
        3,
        status(
            3,
            cond("Accepted", "True"),
            cond("Synced", "True"),
            cond("Ready", "True", "served by 2/2 replicas"),
            cond("Stalled", "False"),
            cond("Reconciling", "False"),
        ),
    )
    assert health(obj) == ("Healthy", "served by 2/2 replicas")


def test_stale_observed_generation_is_progressing_even_when_ready() -> None:
    obj = bot(4, status(3, cond("Ready", "True", "served by 2/2 replicas")))
    state, message = health(obj)
    assert state == "Progressing"
    assert "generation 4" in message


def test_stalled_is_degraded_with_its_message() -> None:
    obj = bot(
        3,
        status(
            3,
            cond("Ready", "False", "not served"),
            cond("Stalled", "True", "spec.llm.maxTokenz: unknown field", "InvalidSpec"),
        ),
    )
    assert health(obj) == ("Degraded", "spec.llm.maxTokenz: unknown field")


def test_stalled_without_message_uses_its_reason() -> None:
    obj = bot(3, status(3, cond("Stalled", "True", "", "InvalidSpec")))
    assert health(obj) == ("Degraded", "InvalidSpec")


def test_stalled_for_an_older_generation_is_progressing() -> None:
    # kstatus: conditions about an older spec say nothing about the current one.
    obj = bot(5, status(4, cond("Stalled", "True", "bad spec")))
    assert health(obj)[0] == "Progressing"


@pytest.mark.parametrize("obj_status", [None, {}, {"conditions": []}])
def test_no_status_is_progressing(obj_status: dict[str, Any] | None) -> None:
    state, message = health(bot(1, obj_status))
    assert state == "Progressing"
    assert message


def test_reconciling_is_progressing_with_its_message() -> None:
    obj = bot(
        3,
        status(
            3,
            cond("Ready", "Unknown", "waiting for replicas"),
            cond("Reconciling", "True", "1/2 replicas serve generation 3"),
            cond("Stalled", "False"),
        ),
    )
    assert health(obj) == ("Progressing", "1/2 replicas serve generation 3")


def test_ready_false_without_reconciling_reports_the_ready_message() -> None:
    obj = bot(3, status(3, cond("Ready", "False", "0/2 replicas serve generation 3")))
    assert health(obj) == ("Progressing", "0/2 replicas serve generation 3")


def test_status_without_observed_generation_is_not_healthy() -> None:
    obj = bot(3, status(None, cond("Ready", "True", "ok")))
    assert health(obj)[0] == "Progressing"


def test_argocd_cm_patch_installs_this_very_script() -> None:
    patch = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text(encoding="utf-8"))
    assert patch["kind"] == "ConfigMap"
    assert patch["metadata"] == {
        "name": "argocd-cm",
        "namespace": "argocd",
        "labels": {"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"},
    }
    assert patch["data"] == {"resource.customizations.health.kubebots.io_Bot": SCRIPT}


def rollout_status(phase: Phase, reason: str = "") -> dict[str, Any]:
    """The status the operator itself writes for generation 3 rolling out over generation 2."""
    spec = {"llm": {"provider": "echo"}, "rollout": {"steps": [{"weight": 10}]}}
    ref = BotRef("default", "support", "uid-1", 3, spec)
    weight = 10 if phase == "Progressing" else 0
    state = RolloutState(phase, 2, 0, weight, False, 1, 0.0, reason)
    plan = RolloutConfig.model_validate(spec["rollout"])
    applied = Applied(revision=9, rollout=state, plan=plan, stable_revision=8)
    return status_patch(ref, applied, Serving(replicas=2, served=2), None)


def test_a_rollout_in_progress_is_progressing_and_a_rolled_back_one_degraded() -> None:
    progressing = health(bot(3, rollout_status("Progressing")))
    assert progressing[0] == "Progressing"
    rolled_back = health(
        bot(3, rollout_status("RolledBack", "AnalysisFailed: error rate 30% > 5%"))
    )
    assert rolled_back[0] == "Degraded" and "error rate 30% > 5%" in rolled_back[1], rolled_back
    aborted = health(bot(3, rollout_status("Aborted", "Aborted: asked by the annotation")))
    assert aborted[0] == "Degraded"
