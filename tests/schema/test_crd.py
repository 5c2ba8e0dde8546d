"""The committed CRD is the one generated from the schema, and it is structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kubebots.runtime.schema.crd import bot_crd, bot_crd_yaml

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "crds" / "bots.kubebots.io.yaml"


def test_committed_crd_matches_the_generated_one() -> None:
    assert COMMITTED.read_text() == bot_crd_yaml(), "run `make crds` and commit the result"


def walk(node: Any, path: str = "") -> list[str]:
    """Violations of the structural-schema rules Kubernetes enforces."""
    problems = []
    if isinstance(node, dict):
        for banned in (
            "$ref",
            "anyOf",
            "oneOf",
            "allOf",
            "additionalProperties",
            "default",
            "title",
            "const",
        ):
            if banned in node:
                problems.append(f"{path}: {banned}")
        if ("properties" in node or "items" in node) and node.get("type") not in (
            "object",
            "array",
        ):
            problems.append(f"{path}: no type")
        for key, value in node.items():
            problems += walk(value, f"{path}.{key}")
    return problems


def test_schema_is_structural_and_shaped_for_1_20() -> None:
    crd = bot_crd()
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    assert walk(schema) == []
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == "bots.kubebots.io"
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["kb", "bot"] and names["categories"] == ["kubebots"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["Ready", "Reason", "Model", "Served", "Age", "Message"]
    ready = '.status.conditions[?(@.type=="Ready")]'
    assert columns["Ready"]["jsonPath"] == f"{ready}.status"
    assert columns["Reason"]["jsonPath"] == f"{ready}.reason"
    assert columns["Message"] == {  # -o wide only
        "name": "Message",
        "type": "string",
        "jsonPath": f"{ready}.message",
        "priority": 1,
    }
    assert all("priority" not in c for n, c in columns.items() if n != "Message")
    spec = schema["properties"]["spec"]["properties"]
    assert spec["llm"]["properties"]["provider"]["enum"] == ["openai", "echo"]
    assert spec["conversationStorage"]["properties"]["backend"]["enum"] == [
        "memory",
        "sqlite",
        "postgres",
    ]
    assert spec["conversationStorage"]["required"] == ["backend"]
    assert spec["llm"]["properties"]["timeout"] == {
        "minimum": 0.0,
        "exclusiveMinimum": True,
        "maximum": 3600.0,
        "type": "number",
        "description": "Seconds per attempt.",
    }
    assert "apiKey" not in spec["llm"]["properties"]  # no place for an inline key
    status = schema["properties"]["status"]["properties"]
    assert {"observedGeneration", "conditions", "revision", "servedReplicas", "replicas"} <= set(
        status
    )


def test_every_example_bot_fits_the_crd_schema() -> None:
    props = bot_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    spec_props = props["spec"]["properties"]
    for path in (ROOT / "examples" / "bots").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            assert set(doc["spec"]) <= set(spec_props), path
            for section, value in doc["spec"].items():
                if isinstance(value, dict):
                    assert set(value) <= set(spec_props[section]["properties"]), (path, section)


def test_tools_in_the_spec_and_the_status() -> None:
    schema = bot_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    tools = schema["properties"]["spec"]["properties"]["tools"]["properties"]
    assert {"mcp", "http", "maxToolSteps", "deadlineSeconds"} <= set(tools)
    assert tools["mcp"]["items"]["required"] == ["name", "url"]
    # an HTTP tool's parameters are any JSON Schema: kept as given, not pruned
    parameters = tools["http"]["items"]["properties"]["parameters"]
    assert parameters["type"] == "object"
    assert parameters["x-kubernetes-preserve-unknown-fields"] is True
    status = schema["properties"]["status"]["properties"]["tools"]
    mcp = status["properties"]["mcp"]["items"]
    assert mcp["required"] == ["name", "tools", "replicas"]
    assert {k: v["type"] for k, v in mcp["properties"].items()} == {
        "name": "string",
        "tools": "integer",
        "replicas": "integer",
    }


def undescribed(node: Any, path: str = "") -> list[str]:
    """The properties (at any depth, list items too) without a description."""
    missing = []
    if isinstance(node, dict):
        for name, prop in (node.get("properties") or {}).items():
            if not prop.get("description"):
                missing.append(f"{path}.{name}")
            missing += undescribed(prop, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            missing += undescribed(node["items"], f"{path}[]")
    return missing


def descriptions(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["description"]] if isinstance(node.get("description"), str) else []
        return found + [d for value in node.values() for d in descriptions(value)]
    if isinstance(node, list):
        return [d for item in node for d in descriptions(item)]
    return []


def test_every_field_has_a_plain_text_description_for_kubectl_explain() -> None:
    schema = bot_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema.get("description")
    # metadata is the apiserver's: it refuses a CRD that says more of it than its type
    assert undescribed(schema) == [".metadata"]
    assert schema["properties"]["metadata"] == {"type": "object"}
    texts = descriptions(schema)
    assert len(texts) > 100
    # one paragraph of plain text: no reST quotes or roles, no docstring line breaks
    assert [t for t in texts if "`" in t or "\n" in t or ":class:" in t] == []
    spec = schema["properties"]["spec"]["properties"]
    backend = spec["conversationStorage"]["properties"]["backend"]
    assert "postgres" in backend["description"]  # kept when the union is merged
