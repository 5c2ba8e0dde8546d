"""Tools a bot's model may call, run by the runtime: MCP servers, HTTP endpoints, functions."""

from .base import (
    ApprovalRequired,
    ToolEvent,
    ToolFinished,
    ToolResult,
    ToolSource,
    ToolSpec,
    ToolStarted,
    TurnCompletion,
    specs_json,
)
from .functions import FunctionSource, FunctionTool
from .stats import ToolStats
from .toolset import Toolset

__all__ = [
    "ApprovalRequired",
    "FunctionSource",
    "FunctionTool",
    "ToolEvent",
    "ToolFinished",
    "ToolResult",
    "ToolSource",
    "ToolSpec",
    "ToolStarted",
    "ToolStats",
    "Toolset",
    "TurnCompletion",
    "specs_json",
]
