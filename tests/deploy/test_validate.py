"""Every object deploy/ and crds/ render to, and every example manifest, validated strictly and
offline for the Kubernetes versions users run (1.28 and 1.33).

Built-in kinds are checked with kubernetes-validate's strict schemas (unknown fields are errors,
as `kubectl apply` makes them with its default `--validate=strict`). An apiVersion without a
schema for that Kubernetes version is a failure: the apiserver would refuse the object (as it
refuses `policy/v1beta1` PodDisruptionBudgets from 1.25 on). Custom resources (Bots) are checked
against the openAPIV3Schema of the CRD committed in crds/, as the apiserver checks them.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.render import ROOT, render

VERSIONS = ["1.28", "1.33"]
#: Every kustomization under deploy/ and crds/ (the e2e overlay targets 1.20: see test_manifests).
KUSTOMIZATIONS = sorted(
    p.parent
    for p in [*(ROOT / "deploy").rglob("kustomization.yaml"), ROOT / "crds" / "kustomization.yaml"]
)
#: (``examples/bots`` links to the Bots shipped as package data; ``rglob`` does not follow links.)
EXAMPLES = sorted(
    {*(ROOT / "examples").rglob("*.yaml"), *(ROOT / "examples" / "bots").glob("*.yaml")}
)
#: The structure of ServiceMonitor and PrometheusRule (not in kubernetes-validate).
MONITORING_CRDS = ROOT / "tests" / "deploy" / "schemas" / "monitoring.coreos.com.yaml"
#: The quickstart's example Bots (shipped in the ConfigMap kubebots-example-bots).
QUICKSTART_BOT = ROOT / "deploy" / "quickstart" / "bots" / "hello.yaml"


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def label(obj: dict[str, Any]) -> str:
    return f"{obj.get('apiVersion')} {obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


# -- CRD schemas as JSON Schema ----------------------------------------------------------------


def to_json_schema(node: Any) -> Any:
    """A CRD's structural OpenAPI v3 schema as JSON Schema (draft 2020-12), with the apiserver's
    reading: `nullable`, boolean `exclusiveMinimum`/`exclusiveMaximum`, int-or-string, and
    unknown fields refused wherever they are not preserved."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for k, value in node.items():
        if k in {"properties", "patternProperties"}:
            out[k] = {name: to_json_schema(v) for name, v in value.items()}
        elif k in {"items", "additionalProperties", "not"} and isinstance(value, dict):
            out[k] = to_json_schema(value)
        elif k in {"allOf", "anyOf", "oneOf"}:
            out[k] = [to_json_schema(v) for v in value]
        elif k.startswith("x-kubernetes-") or k in {"nullable", "description", "example"}:
            continue
        else:
            out[k] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    for bound in ("Minimum", "Maximum"):
        exclusive = out.pop(f"exclusive{bound}", None)
        if exclusive is True:
            out[f"exclusive{bound}"] = out.pop(bound.lower())
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    preserved = node.get("x-kubernetes-preserve-unknown-fields") is True
    if "properties" in node and not preserved and "additionalProperties" not in node:
        out["additionalProperties"] = False
    return out


@cache
def crds() -> dict[tuple[str, str, str], dict[str, Any]]:
    """(group, version, kind) -> JSON Schema, for every CRD the quickstart installs and the
    Prometheus Operator's kinds deploy/monitoring uses (:data:`MONITORING_CRDS`)."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    monitoring = [d for d in yaml.safe_load_all(MONITORING_CRDS.read_text()) if d]
    for crd in [*render(ROOT / "deploy" / "quickstart").objects, *monitoring]:
        if crd["kind"] != "CustomResourceDefinition":
            continue
        spec = crd["spec"]
        for version in spec["versions"]:
            if version["served"]:
                schema = to_json_schema(version["schema"]["openAPIV3Schema"])
                found[(spec["group"], version["name"], spec["names"]["kind"])] = schema
    return found


def custom_schema(obj: dict[str, Any]) -> dict[str, Any] | None:
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    return crds().get((group, version, str(obj.get("kind"))))


# -- validation ------------------------------------------------------------------------------


def problems(obj: dict[str, Any], version: str) -> list[str]:
    """Why Kubernetes ``version`` would refuse ``obj`` ([] when it would accept it)."""
    schema = custom_schema(obj)
    if schema is not None:
        validator = jsonschema.Draft202012Validator(schema)
        return [
            f"{label(obj)}: {'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
        ]
    try:
        validated = kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{label(obj)}: {'.'.join(map(str, e.path)) or '(root)'}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{label(obj)}: Kubernetes {version} has no such kind in this apiVersion"]
    # No silent fallback to the schemas of an older Kubernetes.
    assert validated == version, (validated, version)
    return []


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=rel)
def test_every_rendered_object_is_valid(directory: Path, version: str) -> None:
    objects = render(directory).objects
    assert objects
    found = [p for obj in objects for p in problems(obj, version)]
    assert found == []


def example_objects() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{rel(path)}#{i}", doc)
        for path in EXAMPLES
        for i, doc in enumerate(yaml.safe_load_all(path.read_text()))
        if isinstance(doc, dict) and "kind" in doc
    ]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("where", "obj"), example_objects(), ids=[w for w, _ in example_objects()])
def test_every_example_manifest_is_valid(where: str, obj: dict[str, Any], version: str) -> None:
    assert problems(obj, version) == []


def test_the_examples_include_every_bot_and_are_checked_against_the_crd() -> None:
    bots = [w for w, obj in example_objects() if obj["kind"] == "Bot"]
    assert {w.split("#")[0] for w in bots} >= {
        "examples/bots/support.yaml",
        "examples/bots/sales.yaml",
        "examples/cluster/private-llm.yaml",
    }
    for _, obj in example_objects():
        if obj["kind"] == "Bot":
            assert custom_schema(obj) is not None


def configmap_bots() -> list[tuple[str, dict[str, Any]]]:
    """The documents of every ConfigMap key of the quickstart that holds Bots."""
    found = []
    for obj in render(ROOT / "deploy" / "quickstart").objects:
        if obj["kind"] == "ConfigMap":
            for key, text in (obj.get("data") or {}).items():
                for i, doc in enumerate(yaml.safe_load_all(text)):
                    if isinstance(doc, dict) and doc.get("kind") == "Bot":
                        found.append((f"ConfigMap/{obj['metadata']['name']}:{key}#{i}", doc))
    return found


@pytest.mark.parametrize("version", VERSIONS)
def test_the_bots_the_quickstart_ships_in_a_configmap_are_valid_against_the_crd(
    version: str,
) -> None:
    bots = configmap_bots()
    assert [where for where, _ in bots] == ["ConfigMap/kubebots-example-bots:hello.yaml#0"]
    for _, bot in bots:
        assert custom_schema(bot) is not None
        assert problems(bot, version) == []


# -- the validation catches what the apiserver refuses ----------------------------------------


def quickstart_object(kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [
        o
        for o in render(ROOT / "deploy" / "quickstart").objects
        if o["kind"] == kind and name in {None, o["metadata"]["name"]}
    ]
    return found


@pytest.mark.parametrize("version", VERSIONS)
def test_a_policy_v1beta1_pdb_is_refused(version: str) -> None:
    pdb = quickstart_object("PodDisruptionBudget")
    assert problems(pdb, version) == []
    pdb["apiVersion"] = "policy/v1beta1"
    assert problems(pdb, version) == [
        f"policy/v1beta1 PodDisruptionBudget/kubebots-runtime: Kubernetes {version} has no such"
        " kind in this apiVersion"
    ]


@pytest.mark.parametrize("version", VERSIONS)
def test_a_wrong_field_is_refused(version: str) -> None:
    deployment = quickstart_object("StatefulSet")
    misspelt = copy.deepcopy(deployment)
    misspelt["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    (problem,) = problems(misspelt, version)
    assert "spec.template.spec.containers.0" in problem
    assert "'imagePullPolicyy' was unexpected" in problem
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "one"
    (problem,) = problems(wrong_type, version)
    assert problem.startswith("apps/v1 StatefulSet/kubebots-postgres: spec.replicas: ")
    for name in ("kubebots-init-credentials", "kubebots-example-bots"):
        job = quickstart_object("Job", name)
        job["spec"]["backofLimit"] = job["spec"].pop("backoffLimit")
        assert "'backofLimit' was unexpected" in problems(job, version)[0]


def test_a_bot_is_checked_against_the_committed_crd() -> None:
    (bot,) = yaml.safe_load_all(QUICKSTART_BOT.read_text())
    assert problems(bot, "1.33") == []
    cases = {
        ("llm", "provider"): ("anthropic", "spec.llm.provider: 'anthropic' is not one of"),
        ("llm", "maxTokens"): (0, "spec.llm.maxTokens: 0 is less than the minimum of 1"),
        ("llm", "timeout"): (0, "spec.llm.timeout: 0 is less than or equal to the minimum of 0"),
        ("memory", "type"): ("window", "spec.memory.type: 'window' is not one of ['buffer']"),
    }
    for (section, field), (value, expected) in cases.items():
        broken = copy.deepcopy(bot)
        broken["spec"][section][field] = value
        (problem,) = problems(broken, "1.33")
        assert problem.startswith("kubebots.io/v1alpha1 Bot/hello: " + expected), problem
    # nullable fields accept null; fields under spec are preserved (the operator names typos).
    nullable = copy.deepcopy(bot)
    nullable["spec"]["llm"]["baseUrl"] = None
    nullable["spec"]["llm"]["maxTokenz"] = 5
    assert problems(nullable, "1.33") == []
    # At the top level, an unknown field is refused.
    typo = copy.deepcopy(bot)
    typo["specc"] = typo.pop("spec")
    (problem,) = problems(typo, "1.33")
    assert "'specc' was unexpected" in problem


def test_the_schema_conversion_reads_openapi_as_the_apiserver_does() -> None:
    schema = to_json_schema(
        {
            "type": "object",
            "properties": {
                "a": {"type": "number", "minimum": 0, "exclusiveMinimum": True, "nullable": True},
                "b": {"type": "string", "enum": ["x"], "nullable": True},
                "c": {"x-kubernetes-int-or-string": True},
                "d": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "e": {"type": "object", "properties": {"f": {"type": "integer"}}},
            },
        }
    )
    v = jsonschema.Draft202012Validator(schema)
    assert v.is_valid({"a": None, "b": None, "c": 3, "d": {"any": 1}, "e": {"f": 1}})
    assert v.is_valid({"c": "50%"})
    assert not v.is_valid({"a": 0})
    assert not v.is_valid({"c": 1.5})
    assert not v.is_valid({"e": {"g": 1}})
    assert not v.is_valid({"z": 1})
