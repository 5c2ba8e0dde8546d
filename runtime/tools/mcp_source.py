"""The tools of one remote MCP server (a Bot's ``tools.mcp`` entry), through a shared session."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ToolError
from ..schema.tools import TOOL_NAME_PATTERN, McpServerTool
from .base import ToolResult, ToolSpec
from .http_tool import cut
from .mcp_connection import McpConnection

if TYPE_CHECKING:
    from mcp_types import CallToolResult, Tool

log = logging.getLogger("kubebots.runtime.tools.mcp")
_VALID_NAME = re.compile(TOOL_NAME_PATTERN)

#: Called once when the source is closed (gives the connection back to its registry).
Release = Callable[[], Awaitable[None]]


class McpToolSource:
    """The server's tools as ``config`` offers them (label ``mcp:<name>``): only
    ``allowedTools`` (all when unset), named ``toolPrefix + name``, waiting for approval when
    ``requiresApproval`` or listed in ``approvalRequiredTools``. A call's result is the text of
    its contents joined (other kinds as ``[image]``, ``[audio]``, ...; the structured content as
    JSON when there is no text), cut at ``maxResponseBytes``; the server's ``isError`` makes a
    result with ``is_error``."""

    def __init__(
        self,
        config: McpServerTool,
        connection: McpConnection,
        *,
        release: Release | None = None,
    ) -> None:
        self.config = config
        self.label = f"mcp:{config.name}"
        self.connection = connection
        self._release = release
        self._names: dict[str, str] = {}  # as the model sees it -> the server's name
        self._closed = False

    async def list_tools(self) -> list[ToolSpec]:
        config = self.config
        offered = await self.connection.list_tools(seconds=config.timeout)
        by_name = {tool.name: tool for tool in offered}
        wanted = config.allowed_tools if config.allowed_tools is not None else list(by_name)
        absent = [name for name in wanted if name not in by_name]
        if absent:
            raise ToolError(f"the server offers no tool {absent[0]!r} (listed in allowedTools)")
        prefix = config.tool_prefix or ""
        approval = set(config.approval_required_tools)
        specs: list[ToolSpec] = []
        names: dict[str, str] = {}
        for name in dict.fromkeys(wanted):
            if not _VALID_NAME.match(prefix + name):
                if config.allowed_tools is not None:
                    raise ToolError(f"the server's tool {name!r} has no valid function name")
                log.warning("%s: skipping tool %r: no valid function name", self.label, name)
                continue
            names[prefix + name] = name
            needs_approval = config.requires_approval or name in approval
            specs.append(_spec(by_name[name], prefix + name, config, needs_approval, self.label))
        self._names = names
        return specs

    async def call(self, name: str, arguments: Mapping[str, Any], *, seconds: float) -> ToolResult:
        original = self._names.get(name)
        if original is None:
            raise ToolError(f"unknown tool {name!r}")
        limit = min(self.config.timeout, seconds) if seconds > 0 else self.config.timeout
        result = await self.connection.call_tool(original, arguments, seconds=limit)
        return ToolResult(
            cut(result_text(result).encode(), self.config.max_response_bytes),
            is_error=result.is_error,
        )

    async def close(self) -> None:
        """Give the shared session back (closed when its last user is gone). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._release is not None:
            await self._release()


def _spec(tool: Tool, name: str, config: McpServerTool, approval: bool, label: str) -> ToolSpec:
    schema = dict(tool.input_schema) if tool.input_schema else {}
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return ToolSpec(
        name=name,
        description=tool.description or "",
        parameters=schema,
        requires_approval=approval,
        source=label,
        timeout=config.timeout,
    )


def result_text(result: CallToolResult) -> str:
    """The text the model reads of an MCP tool's result."""
    parts: list[str] = []
    for block in result.content:
        if block.type == "text":
            parts.append(block.text)
        elif block.type == "resource":
            text = getattr(block.resource, "text", None)
            parts.append(text if isinstance(text, str) else f"[resource {block.resource.uri}]")
        elif block.type == "resource_link":
            parts.append(f"[resource_link {block.uri}]")
        else:
            parts.append(f"[{block.type}]")
    if not any(block.type == "text" for block in result.content) and (
        result.structured_content is not None
    ):
        return json.dumps(result.structured_content, default=str)
    return "\n".join(parts)
