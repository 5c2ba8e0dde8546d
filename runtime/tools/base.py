"""The shape of a bot's tools: what the model is offered, what a call returns, and the events a
turn's tool loop emits.

A :class:`ToolSource` is one place tools come from (an MCP server, an HTTP endpoint, Python
functions); a :class:`~.toolset.Toolset` is a bot's tools from all its sources, which the tool
loop in :class:`~kubebots.runtime.bot.DynaBot` runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..llm.base import Completion, ToolCall


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool as the model sees it. ``name`` is unique in a bot's toolset (OpenAI's function
    name rule); ``parameters`` is the JSON Schema of its arguments object; ``source`` names the
    source it comes from (``mcp:<server>``, ``http:<name>``, ``function``) for status, metrics
    and logs."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    requires_approval: bool = False
    source: str = ""
    #: seconds one call may take (the source's setting); the turn's deadline may cut it shorter
    timeout: float = 30.0

    def openai(self) -> dict[str, Any]:
        """The tool in an OpenAI request's ``tools`` list."""
        function: dict[str, Any] = {"name": self.name, "parameters": dict(self.parameters)}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a call returned, as the text the model reads; ``is_error``: the tool failed (the
    text says why, without secrets) and the model may try something else."""

    content: str
    is_error: bool = False


@runtime_checkable
class ToolSource(Protocol):
    """One place tools come from. ``label`` names it (``mcp:<server>``)."""

    label: str

    async def list_tools(self) -> list[ToolSpec]:
        """The tools offered (raises :class:`~kubebots.runtime.errors.ToolError` if the source
        cannot be listed)."""
        ...

    async def call(self, name: str, arguments: Mapping[str, Any], *, seconds: float) -> ToolResult:
        """Run tool ``name`` (as :meth:`list_tools` named it, any prefix included) with
        ``arguments`` within ``seconds``. A tool that fails raises
        :class:`~kubebots.runtime.errors.ToolError` (``ToolTimeoutError`` when out of time) or
        returns a result with ``is_error``."""
        ...

    async def close(self) -> None:
        """Release this source's share of its clients and sessions. Idempotent."""
        ...


# -- what a turn's tool loop emits (the SSE route's tool events) ---------------------------------
@dataclass(frozen=True, slots=True)
class ToolStarted:
    """The model called a server-side tool; it is running."""

    call: ToolCall


@dataclass(frozen=True, slots=True)
class ToolFinished:
    """A server-side tool call returned (or failed: ``result.is_error``)."""

    call: ToolCall
    result: ToolResult


@dataclass(frozen=True, slots=True)
class ApprovalRequired:
    """The turn stopped: these calls wait for the client's approval (a follow-up request
    approves or rejects each by id, and the turn resumes)."""

    calls: tuple[ToolCall, ...]


ToolEvent = ToolStarted | ToolFinished | ApprovalRequired


@dataclass(frozen=True, slots=True)
class TurnCompletion(Completion):
    """A turn's reply after its tool loop: the final reply (``content``, ``usage`` summed over
    every LLM call of the turn), the server-side tool calls that ran (``tool_runs``, in order)
    and, when the turn stopped for approval, the calls waiting for it (``pending``)."""

    tool_runs: tuple[ToolFinished, ...] = ()
    pending: tuple[ToolCall, ...] = ()


def specs_json(specs: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    """``specs`` as an OpenAI request's ``tools``."""
    return [spec.openai() for spec in specs]
