"""``kind: Bot`` YAML documents: the same files a user would ``kubectl apply``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
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


@dataclass(frozen=True)
class DocumentProblem:
    """One thing wrong in a Bot file: where (1-based line and column when known), which
    document and field, and why. Never holds a value from the file."""

    source: str
    field: str
    reason: str
    line: int | None = None
    column: int | None = None
    bot: str | None = None  # "namespace/name" once known

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}:{self.column}"
        bot = f" {self.bot}:" if self.bot else ""
        return f"{where}:{bot} {self.field}: {self.reason}"


def _document_error(source: str, message: str, field: str = "(root)") -> ConfigurationError:
    return ConfigurationError(f"{source}: {message}", errors=[(field, message)])


def _check_metadata(doc: dict[str, Any]) -> tuple[str | None, str, list[tuple[str, str]]]:
    """``(name, namespace, errors)`` of a document's header: every error, not the first."""
    errors = [
        (key, "unknown top-level field")
        for key in sorted(set(doc) - {"apiVersion", "kind", "metadata", "spec", "status"})
    ]
    if doc.get("apiVersion") != FULL_API_VERSION:
        errors.append(("apiVersion", f"apiVersion must be {FULL_API_VERSION}"))
    if doc.get("kind") != KIND:
        errors.append(("kind", f"kind must be {KIND}"))
    meta = doc.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    name = meta.get("name")
    if not isinstance(name, str):
        errors.append(("metadata.name", "metadata.name is required"))
        name = None
    elif len(name) > 253 or not re.match(_NAME_PATTERN, name):
        errors.append(("metadata.name", "must be a DNS subdomain name"))
    namespace = meta.get("namespace", "default")
    if not isinstance(namespace, str) or not re.match(_NAME_PATTERN, namespace):
        errors.append(("metadata.namespace", "must be a DNS label"))
        namespace = "default"
    return name, namespace, errors


def check_bot_document(
    doc: Any, *, source: str = "<input>"
) -> tuple[BotDocument | None, list[tuple[str, str]]]:
    """The document and ``[]``, or ``None`` and every ``(field, reason)`` wrong with it."""
    if not isinstance(doc, dict):
        return None, [("(root)", "a Bot document must be a mapping")]
    name, namespace, errors = _check_metadata(doc)
    spec: BotConfig | None = None
    try:
        spec = parse_bot_config(doc.get("spec") or {}, bot_id=name)
    except ConfigurationError as exc:
        errors += [(f"spec.{f}", r) for f, r in exc.errors] or [("spec", exc.message)]
    if errors or spec is None or name is None:
        return None, errors
    return BotDocument(name=name, namespace=namespace, spec=spec, source=source), []


def parse_bot_document(doc: Any, *, source: str = "<input>") -> BotDocument:
    """Check ``apiVersion``/``kind``/``metadata`` and validate ``spec`` with the one schema.

    Raises one :class:`ConfigurationError` listing every problem of the document.
    """
    parsed, errors = check_bot_document(doc, source=source)
    if parsed is not None:
        return parsed
    name = doc.get("metadata", {}).get("name") if isinstance(doc, dict) else None
    name = name if isinstance(name, str) else None
    what = f"invalid Bot '{name}'" if name else "invalid Bot document"
    raise ConfigurationError(f"{source}: {what}: {describe(errors)}", errors=errors, bot_id=name)


def _locate(node: yaml.Node | None, field: str) -> tuple[int | None, int | None]:
    """The 1-based line and column of ``field`` (``spec.llm.model``) in a composed document:
    the key that names it, or the deepest part of its path that exists."""
    if node is None:
        return None, None
    mark = node.start_mark
    for part in field.split("."):
        if isinstance(node, yaml.MappingNode):
            found = [(k, v) for k, v in node.value if getattr(k, "value", None) == part]
            if not found:
                continue  # a path part the YAML does not spell (a union's tag): look deeper
            key, node = found[0]
            mark = key.start_mark
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            mark = node.start_mark
        else:
            break
    return mark.line + 1, mark.column + 1


def check_bot_text(text: str, *, source: str) -> tuple[list[BotDocument], list[DocumentProblem]]:
    """Every valid Bot of a (multi-document) YAML text and every problem of the others, with
    line and column: a YAML syntax error ends the file (nothing after it can be read)."""
    docs: list[BotDocument] = []
    problems: list[DocumentProblem] = []
    loader = yaml.SafeLoader(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            data = loader.construct_document(node)
            if data is not None:
                parsed, errors = check_bot_document(data, source=f"{source}#{index}")
                if parsed is not None:
                    docs.append(parsed)
                bot = _bot_label(data)
                for field, reason in errors:
                    line, column = _locate(node, field)
                    problems.append(DocumentProblem(source, field, reason, line, column, bot))
            index += 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        reason = f"not valid YAML: {exc.problem or exc.context or 'syntax error'}"
        problems.append(DocumentProblem(source, "(yaml)", reason, line, column))
    except yaml.YAMLError as exc:
        problems.append(DocumentProblem(source, "(yaml)", f"not valid YAML ({type(exc).__name__})"))
    finally:
        loader.dispose()
    return docs, problems


def _bot_label(data: Any) -> str | None:
    meta = data.get("metadata") if isinstance(data, dict) else None
    if isinstance(meta, dict) and isinstance(meta.get("name"), str):
        namespace = meta.get("namespace", "default")
        return f"{namespace if isinstance(namespace, str) else '?'}/{meta['name']}"
    return None


def iter_bot_documents(text: str, *, source: str = "<input>") -> Iterator[BotDocument]:
    """Every ``Bot`` in a (multi-document) YAML text; empty documents are skipped.

    All-or-nothing: one :class:`ConfigurationError` lists every problem of every document.
    """
    docs, problems = check_bot_text(text, source=source)
    if problems:
        errors = [(p.field, p.reason) for p in problems]
        shown = "; ".join(str(p) for p in problems[:20])
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        raise ConfigurationError(f"{shown}{more}", errors=errors)
    yield from docs


#: What a directory given to ``kubebots validate -f DIR`` (or ``create-bots``) is read for.
BOT_FILE_SUFFIXES = frozenset({".yaml", ".yml", ".json"})


def find_bot_files(paths: Iterable[str | Path], *, recursive: bool = False) -> list[Path]:
    """The files named, and the YAML/JSON files in the directories named (their
    subdirectories too with ``recursive``, like ``kubectl -R``), sorted by path; hidden entries
    such as a mounted ConfigMap's ``..data`` are skipped. A path that does not exist is a
    :class:`ConfigurationError`."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            walk = path.rglob("*") if recursive else path.iterdir()
            found += sorted(
                p
                for p in walk
                if p.suffix in BOT_FILE_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            found.append(path)
        else:
            raise ConfigurationError(f"{path}: no such file or directory")
    return found


def load_bot_documents(path: str | Path) -> list[BotDocument]:
    """Read and validate every ``Bot`` in a file; all-or-nothing (an invalid one raises)."""
    p = Path(path)
    return list(iter_bot_documents(p.read_text(encoding="utf-8"), source=str(p)))
