"""The Secret keys a bot's configuration names, each with its field path.

``llm.apiKeySecretRef`` first, then each ``llm.fallbacks[i].apiKeySecretRef``, then each
``secretRef`` of the MCP servers' headers and of the HTTP tools' headers, in spec order. The
paths are the spec's (camelCase, list indexes as numbers, no ``spec.`` prefix), as the runtime's
configuration errors name them: ``tools.http.0.headers.1.secretRef``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import ValidationError

from ..errors import ConfigurationError
from ._base import SchemaModel
from .bot import BotConfig
from .llm import LLMConfig, SecretKeyRef
from .parse import parse_bot_config
from .tools import ToolHeader, ToolsConfig

#: A Secret key a configuration names, with its field path.
SecretRefAt = tuple[str, SecretKeyRef]

_M = TypeVar("_M", bound=SchemaModel)


def llm_secret_refs(llm: LLMConfig) -> list[SecretRefAt]:
    """The Secret keys of the ``llm`` section: the bot's key, then each fallback's."""
    refs = [("llm.apiKeySecretRef", llm.api_key_secret_ref)]
    refs += [
        (f"llm.fallbacks.{i}.apiKeySecretRef", fallback.api_key_secret_ref)
        for i, fallback in enumerate(llm.fallbacks)
    ]
    return [(path, ref) for path, ref in refs if ref is not None]


def _header_refs(field: str, headers: list[ToolHeader]) -> list[SecretRefAt]:
    return [
        (f"{field}.{i}.secretRef", header.secret_ref)
        for i, header in enumerate(headers)
        if header.secret_ref is not None
    ]


def tools_secret_refs(tools: ToolsConfig) -> list[SecretRefAt]:
    """The Secret keys of the ``tools`` section: the MCP servers' headers, then the HTTP
    tools'."""
    refs: list[SecretRefAt] = []
    for i, server in enumerate(tools.mcp):
        refs += _header_refs(f"tools.mcp.{i}.headers", server.headers)
    for i, tool in enumerate(tools.http):
        refs += _header_refs(f"tools.http.{i}.headers", tool.headers)
    return refs


def secret_refs(config: BotConfig) -> list[SecretRefAt]:
    """Every Secret key ``config`` names, with its field path (see the module docstring)."""
    return llm_secret_refs(config.llm) + tools_secret_refs(config.tools)


def spec_secret_refs(spec: Mapping[str, Any]) -> list[SecretRefAt]:
    """The Secret keys a raw spec names, read through the schema.

    A spec invalid elsewhere still names the Secrets of its valid ``llm`` and ``tools``
    sections (each read on its own): a store may hold the bot's last good config, which a
    change of those Secrets must reach. An invalid section names none.
    """
    try:
        return secret_refs(parse_bot_config(dict(spec)))
    except ConfigurationError:
        return _section_refs(spec)


def _section_refs(spec: Mapping[str, Any]) -> list[SecretRefAt]:
    """The Secret keys of the valid ones of ``spec``'s ``llm`` and ``tools`` sections."""
    llm = _valid(LLMConfig, spec.get("llm"))
    tools = _valid(ToolsConfig, spec.get("tools"))
    return (llm_secret_refs(llm) if llm else []) + (tools_secret_refs(tools) if tools else [])


def _valid(model: type[_M], section: Any) -> _M | None:
    """``section`` (absent: the defaults) parsed as ``model``; None when it is invalid."""
    try:
        return model.model_validate(section if section is not None else {})
    except ValidationError:
        return None
