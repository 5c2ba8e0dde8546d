"""Tools from Python functions: for the seed's Python API, embedding and tests."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ToolError
from .base import ToolResult, ToolSpec

ToolFunction = Callable[..., Any | Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class FunctionTool:
    """A Python function offered as a tool: called with the model's arguments as keywords; a
    ``str`` result is the tool's text, anything else is sent as JSON. Raising
    :class:`~kubebots.runtime.errors.ToolError` is a tool error the model sees (its message);
    any other exception is one too, naming only the exception's type."""

    spec: ToolSpec
    function: ToolFunction


class FunctionSource:
    """Tools from :class:`FunctionTool`\\ s (label ``function``)."""

    label = "function"

    def __init__(self, tools: Sequence[FunctionTool]) -> None:
        self._tools = {tool.spec.name: tool for tool in tools}

    async def list_tools(self) -> list[ToolSpec]:
        return [tool.spec for tool in self._tools.values()]

    async def call(self, name: str, arguments: Mapping[str, Any], *, seconds: float) -> ToolResult:
        tool = self._tools.get(name)
        if tool is None:
            raise ToolError(f"unknown tool {name!r}")
        try:
            value = tool.function(**arguments)
            if inspect.isawaitable(value):
                value = await value
        except ToolError:
            raise
        except Exception as exc:  # a user's function: any failure is a tool error
            raise ToolError(f"tool {name!r} failed ({type(exc).__name__})") from exc
        return ToolResult(value if isinstance(value, str) else json.dumps(value, default=str))

    async def close(self) -> None:
        """Nothing to release."""
