"""The ``Bot`` CustomResourceDefinition, generated from the one schema (never edited by hand).

pydantic's JSON Schema is turned into a Kubernetes *structural* schema that installs on 1.20
and newer: ``$ref``s inlined, ``Optional`` as ``nullable``, the storage union merged into one
object whose ``backend`` is an enum, JSON-Schema-2020 keywords rewritten to OpenAPI v3 ones,
and what Kubernetes rejects (``title``, ``default``, ``additionalProperties: false``) dropped;
descriptions (every field has one: ``kubectl explain``) become one paragraph of plain text.
Rules the CRD cannot express (one key source, no inline keys) are checked by the operator, and
unknown fields are preserved so that it can refuse a typo by name instead of the apiserver
pruning it silently.
"""

from __future__ import annotations

from typing import Any

import yaml

from .bot import BotConfig
from .document import API_GROUP, API_VERSION, KIND, PLURAL

API_DOC = f"The versioned schema of this object: {API_GROUP}/{API_VERSION}."
KIND_DOC = f"The REST resource this object represents: {KIND}."
_DROP = {"title", "default", "additionalProperties", "discriminator", "examples"}
_CONDITION = {
    "type": "object",
    "required": ["type", "status"],
    "properties": {
        "type": {
            "type": "string",
            "description": "Accepted, Synced, Ready, Stalled, Reconciling or LLMFallback.",
        },
        "status": {
            "type": "string",
            "enum": ["True", "False", "Unknown"],
            "description": "Whether the condition holds.",
        },
        "reason": {"type": "string", "description": "Why, in one CamelCase word."},
        "message": {"type": "string", "description": "Why, for people."},
        "observedGeneration": {
            "type": "integer",
            "format": "int64",
            "description": "The generation the condition was set for.",
        },
        "lastTransitionTime": {
            "type": "string",
            "format": "date-time",
            "description": "When the status last changed.",
        },
    },
}
_FIGURES: dict[str, Any] = {
    "type": "object",
    "description": "What one generation served in the step's window.",
    "properties": {
        "turns": {"type": "integer", "description": "Turns that reached the model."},
        "errors": {"type": "integer", "description": "Turns that failed."},
        "errorRatePercent": {"type": "number", "description": "Failed turns per turn, %."},
        "p95Ms": {"type": "number", "description": "p95 latency of answered turns (ms)."},
        "tokensPerTurn": {"type": "number", "description": "Tokens per answered turn."},
        "flaggedPercent": {"type": "number", "description": "Flagged replies, %."},
    },
}

_ROLLOUT_STATUS: dict[str, Any] = {
    "type": "object",
    "description": "The progressive delivery of the generation (spec.rollout); gone once a "
    "generation is written without one.",
    "properties": {
        "phase": {
            "type": "string",
            "enum": ["Progressing", "Promoted", "RolledBack", "Aborted"],
            "description": "Where the rollout stands.",
        },
        "step": {"type": "integer", "description": "The current step, from 1."},
        "steps": {"type": "integer", "description": "Steps in spec.rollout."},
        "weight": {
            "type": "integer",
            "description": "Percent of new conversations (shadow: of turns mirrored) the "
            "candidate gets.",
        },
        "shadow": {"type": "boolean", "description": "The candidate's replies are mirrored."},
        "stableGeneration": {
            "type": "integer",
            "format": "int64",
            "description": "The generation serving the rest.",
        },
        "candidateGeneration": {
            "type": "integer",
            "format": "int64",
            "description": "The generation rolled out.",
        },
        "attempt": {"type": "integer", "description": "1, then +1 on each retry."},
        "stepStartedAt": {
            "type": "string",
            "format": "date-time",
            "description": "When the current step began.",
        },
        "message": {
            "type": "string",
            "description": "What the rollout waits for, or why it ended.",
        },
        "analysis": {
            "type": "object",
            "description": "The step's last comparison of the candidate with the stable "
            "generation.",
            "properties": {"candidate": _FIGURES, "stable": _FIGURES},
        },
    },
}

STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Observed state, written by the kubebots operator.",
    "properties": {
        "observedGeneration": {
            "type": "integer",
            "format": "int64",
            "description": "The generation the operator last handled.",
        },
        "botId": {"type": "string", "description": "The id clients use: NAMESPACE:NAME."},
        "revision": {"type": "integer", "format": "int64", "description": "Config store revision."},
        "replicas": {"type": "integer", "description": "Live runtime replicas."},
        "servedReplicas": {
            "type": "integer",
            "description": "Runtime replicas serving this generation.",
        },
        "served": {"type": "string", "description": "servedReplicas/replicas, for printing."},
        "llm": {
            "type": "object",
            "description": "Set while an llm.fallbacks endpoint answers for the bot (its "
            "primary failed) on some runtime replicas; gone once the primary answers again.",
            "properties": {
                "servedBy": {
                    "type": "array",
                    "description": "The fallback endpoints answering, with their replicas.",
                    "items": {
                        "type": "object",
                        "required": ["endpoint", "replicas"],
                        "properties": {
                            "endpoint": {
                                "type": "string",
                                "description": "The fallback endpoint, model@host.",
                            },
                            "replicas": {
                                "type": "integer",
                                "description": "Runtime replicas it answers on.",
                            },
                        },
                    },
                },
            },
        },
        "tools": {
            "type": "object",
            "description": "The tools the bot's MCP servers offer, as the runtime replicas "
            "discovered them; gone while no replica reports any.",
            "properties": {
                "mcp": {
                    "type": "array",
                    "description": "One entry per MCP server of the bot.",
                    "items": {
                        "type": "object",
                        "required": ["name", "tools", "replicas"],
                        "properties": {
                            "name": {"type": "string", "description": "The MCP server's name."},
                            "tools": {
                                "type": "integer",
                                "description": "Tools offered (the count most replicas report).",
                            },
                            "replicas": {
                                "type": "integer",
                                "description": "Runtime replicas reporting this server.",
                            },
                        },
                    },
                },
            },
        },
        "rollout": _ROLLOUT_STATUS,
        "conditions": {
            "type": "array",
            "description": "Ready is True once every live runtime replica serves the "
            "generation; its reason says why not (InvalidSpec, SecretMissing, RuntimeError, "
            "ToolUnavailable, RollingOut, NoReplicas, StoreUnavailable, RolloutInProgress, "
            "RolledBack, Aborted). With spec.rollout: Progressing (StepPaused, Analyzing; "
            "Promoted, RolledBack, Aborted) and Degraded (AnalysisFailed, Healthy).",
            "items": _CONDITION,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    },
}


def plain(text: str) -> str:
    """A description as ``kubectl explain`` shows it well: one paragraph, no reST markup (the
    schema's docstrings quote names as ``this``)."""
    return " ".join(text.replace("`", "").split())


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        return _structural({**target, **{k: v for k, v in node.items() if k != "$ref"}}, defs)
    variants = node.get("anyOf") or node.get("oneOf")
    if variants is not None:
        return _union(node, [_structural(v, defs) for v in variants])
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or key == "$defs":
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key == "properties":
            out[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        elif key == "description" and isinstance(value, str):
            out[key] = plain(value)
        else:
            out[key] = _structural(value, defs)
    return out


def _union(node: dict[str, Any], variants: list[dict[str, Any]]) -> Any:
    described = {k: v for k, v in node.items() if k == "description"}
    concrete = [v for v in variants if v.get("type") != "null"]
    nullable = len(concrete) < len(variants)
    if len(concrete) == 1:
        return {**concrete[0], **described, **({"nullable": True} if nullable else {})}
    # A tagged union of objects: one object, the tag an enum, the properties merged.
    properties: dict[str, Any] = {}
    for variant in concrete:
        for name, prop in variant.get("properties", {}).items():
            if name in properties and "enum" in prop:
                seen = properties[name]  # (its description kept when a later one has none)
                properties[name] = {**seen, **prop, "enum": seen["enum"] + prop["enum"]}
            else:
                properties.setdefault(name, prop)
    tags = [
        name
        for name, prop in properties.items()
        if "enum" in prop and all(name in v.get("properties", {}) for v in concrete)
    ]
    merged: dict[str, Any] = {"type": "object", "properties": properties, **described}
    if tags:
        merged["required"] = tags
    return merged


def _keep_unknown(node: Any) -> None:
    """Unknown spec fields are kept, not pruned: the apiserver of 1.20 (no field validation)
    would otherwise drop a typo silently; kept, the operator refuses it by its path."""
    if isinstance(node, dict):
        if node.get("type") == "object":
            node["x-kubernetes-preserve-unknown-fields"] = True
        for value in node.values():
            _keep_unknown(value)


def spec_schema() -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a Bot's ``spec``."""
    raw = BotConfig.model_json_schema(by_alias=True, mode="validation")
    schema: dict[str, Any] = _structural(raw, raw.get("$defs", {}))
    _keep_unknown(schema)
    schema["description"] = (
        "A chat bot: its LLM, system prompt, conversation storage, memory and limits. "
        "Validated by the operator with the kubebots schema; see kubebots validate."
    )
    return schema


def bot_crd() -> dict[str, Any]:
    """The whole ``apiextensions.k8s.io/v1`` CustomResourceDefinition for ``Bot``."""
    ready = '.status.conditions[?(@.type=="Ready")]'
    columns = [
        {"name": "Ready", "type": "string", "jsonPath": f"{ready}.status"},
        {"name": "Reason", "type": "string", "jsonPath": f"{ready}.reason"},
        {"name": "Model", "type": "string", "jsonPath": ".spec.llm.model"},
        {"name": "Served", "type": "string", "jsonPath": ".status.served"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Message", "type": "string", "jsonPath": f"{ready}.message", "priority": 1},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{API_GROUP}"},
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["kb", KIND.lower()],
                "categories": ["kubebots"],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A chat bot served by the kubebots runtime.",
                            "properties": {
                                "apiVersion": {"type": "string", "description": API_DOC},
                                "kind": {"type": "string", "description": KIND_DOC},
                                # the apiserver refuses anything more (a description too)
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": STATUS_SCHEMA,
                            },
                        }
                    },
                }
            ],
        },
    }


def bot_crd_yaml() -> str:
    header = "# Generated from kubebots.runtime.schema by `make crds`. Do not edit.\n"
    return header + yaml.safe_dump(bot_crd(), sort_keys=False, width=100)
