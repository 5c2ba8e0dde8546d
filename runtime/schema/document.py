"""``kind: Bot`` YAML documents: the same files a user would ``kubectl apply``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigurationError
from .bot import BotConfig
from .parse import describe, parse_bot_config

API_GROUP = "kubebots.io"
API_VERSION = "v1alpha1"
KIND = "Bot"
PLURAL = "bots"
FULL_API_VERSION = f"{API_GROUP}/{API_VERSION}"
_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


def bot_id_for(namespace: str, name: str) -> str:
    """The bot id of the Bot ``namespace/name``: ``namespace:name``.

    Neither part can hold ``:`` (DNS names), so the id is unambiguous, and it holds no path
    separator, so it is safe in URLs, file names and SQL keys.
    """
    return f"{namespace}:{name}"


def split_bot_id(bot_id: str) -> tuple[str, str] | None:
    """``(namespace, name)`` of a Bot's id, or ``None`` for ids not made by :func:`bot_id_for`."""
    namespace, sep, name = bot_id.partition(":")
    return (namespace, name) if sep and namespace and name else None


@dataclass(frozen=True)
class BotDocument:
    """One ``Bot`` resource read from a file."""

    name: str
    namespace: str
    spec: BotConfig
    source: str

    @property
    def bot_id(self) -> str:
        return bot_id_for(self.namespace, self.name)

    def spec_dict(self) -> dict[str, Any]:
        """The spec as the store keeps it: JSON-ready, camelCase, only what was written."""
        return self.spec.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _document_error(source: str, message: str, field: str = "(root)") -> ConfigurationError:
    return ConfigurationError(f"{source}: {message}", errors=[(field, message)])


def parse_bot_document(doc: Any, *, source: str = "<input>") -> BotDocument:
    """Check ``apiVersion``/``kind``/``metadata`` and validate ``spec`` with the one schema."""

    if not isinstance(doc, dict):
        raise _document_error(source, "a Bot document must be a mapping")
    unknown = sorted(set(doc) - {"apiVersion", "kind", "metadata", "spec", "status"})
    if unknown:
        raise _document_error(source, "unknown top-level field", unknown[0])
    if doc.get("apiVersion") != FULL_API_VERSION:
        raise _document_error(source, f"apiVersion must be {FULL_API_VERSION}", "apiVersion")
    if doc.get("kind") != KIND:
        raise _document_error(source, f"kind must be {KIND}", "kind")
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        raise _document_error(source, "metadata.name is required", "metadata.name")
    name = meta["name"]
    if len(name) > 253 or not re.match(_NAME_PATTERN, name):
        raise _document_error(source, "must be a DNS subdomain name", "metadata.name")
    namespace = meta.get("namespace", "default")
    if not isinstance(namespace, str) or not re.match(_NAME_PATTERN, namespace):
        raise _document_error(source, "must be a DNS label", "metadata.namespace")
    try:
        spec = parse_bot_config(doc.get("spec") or {}, bot_id=name)
    except ConfigurationError as exc:
        errors = [(f"spec.{f}", r) for f, r in exc.errors] or [("spec", exc.message)]
        raise ConfigurationError(
            f"{source}: invalid Bot '{name}': {describe(errors)}", errors=errors, bot_id=name
        ) from None
    return BotDocument(name=name, namespace=namespace, spec=spec, source=source)


def iter_bot_documents(text: str, *, source: str = "<input>") -> Iterator[BotDocument]:
    """Every ``Bot`` in a (multi-document) YAML text; empty documents are skipped."""
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise _document_error(source, f"not valid YAML ({type(exc).__name__})") from None
    for index, doc in enumerate(docs):
        if doc is None:
            continue
        yield parse_bot_document(doc, source=f"{source}#{index}")


def load_bot_documents(path: str | Path) -> list[BotDocument]:
    """Read and validate every ``Bot`` in a file; all-or-nothing (an invalid one raises)."""
    p = Path(path)
    return list(iter_bot_documents(p.read_text(encoding="utf-8"), source=str(p)))
