"""A bot's tools from all its sources: listed once when the bot is built, run by the tool loop."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .. import tracing
from ..errors import ToolError, ToolTimeoutError, ToolUnavailableError
from ..llm.base import ToolCall
from .base import ToolResult, ToolSource, ToolSpec
from .stats import ToolOutcome, ToolStats

log = logging.getLogger("kubebots.runtime.tools")


class Toolset:
    """The tools of one bot, by the name the model calls them, each with the source that runs
    it. Built by :meth:`open`, which lists every source (in parallel); closed with the bot.

    :meth:`run` never raises for a tool's failure: an unknown tool, arguments that are not a
    JSON object, a tool error or a timeout become a :class:`ToolResult` with ``is_error`` that
    the model reads, and are counted in ``stats`` and logged (without arguments or results).
    """

    def __init__(
        self,
        tools: Sequence[tuple[ToolSpec, ToolSource]],
        *,
        bot_id: str,
        sources: Sequence[ToolSource] = (),
        stats: ToolStats | None = None,
    ) -> None:
        self.bot_id = bot_id
        self._tools = {spec.name: (spec, source) for spec, source in tools}
        self._sources = list(sources) or list({id(s): s for _, s in tools}.values())
        self._counts: dict[str, int] = {}
        for _spec, source in tools:
            self._counts[source.label] = self._counts.get(source.label, 0) + 1
        self.stats = stats or ToolStats()
        self._closed = False

    @classmethod
    async def open(
        cls, sources: Sequence[ToolSource], *, bot_id: str, stats: ToolStats | None = None
    ) -> Toolset:
        """List every source. A source that cannot be listed, or two offering the same name,
        closes all of them and raises :class:`ToolUnavailableError` naming the source."""
        try:
            listed = await asyncio.gather(
                *(s.list_tools() for s in sources), return_exceptions=True
            )
            tools: list[tuple[ToolSpec, ToolSource]] = []
            seen: dict[str, str] = {}
            for source, specs in zip(sources, listed, strict=True):
                if isinstance(specs, BaseException):
                    if isinstance(specs, ToolError):
                        raise ToolUnavailableError(bot_id, source.label, specs.message)
                    raise specs
                for spec in specs:
                    if spec.name in seen:
                        reason = f"tool {spec.name!r} is offered by {seen[spec.name]} too"
                        raise ToolUnavailableError(bot_id, source.label, reason)
                    seen[spec.name] = source.label
                    tools.append((spec, source))
        except BaseException:
            await asyncio.gather(*(s.close() for s in sources), return_exceptions=True)
            raise
        toolset = cls(tools, bot_id=bot_id, sources=sources, stats=stats)
        for source in sources:  # sources that offer nothing (all filtered out) count as 0
            toolset._counts.setdefault(source.label, 0)
        return toolset

    @property
    def specs(self) -> tuple[ToolSpec, ...]:
        return tuple(spec for spec, _ in self._tools.values())

    def spec(self, name: str) -> ToolSpec | None:
        held = self._tools.get(name)
        return held[0] if held else None

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def counts(self) -> Mapping[str, int]:
        """Tools offered per source label (``mcp:<server>``: the tools discovered there)."""
        return dict(self._counts)

    async def run(self, call: ToolCall, *, within: float | None = None) -> ToolResult:
        """Run the model's ``call`` within the tool's timeout (and ``within`` seconds, what is
        left of the turn's deadline, if shorter), in a span naming the tool and its outcome
        (never its arguments or result)."""
        attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.call.id": call.id,
            "kubebots.bot.id": self.bot_id,
        }
        name = "execute_tool"
        if call.name in self._tools:  # a name the model made up is not repeated
            attributes["gen_ai.tool.name"] = call.name
            name = f"execute_tool {call.name}"
        with tracing.span(name, attributes):
            return await self._run(call, within)

    async def _run(self, call: ToolCall, within: float | None) -> ToolResult:
        started = time.perf_counter()
        held = self._tools.get(call.name)
        if held is None:
            return self._done(call, "invalid", started, f"error: there is no tool {call.name!r}")
        spec, source = held
        try:
            arguments = json.loads(call.arguments or "{}")
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict):
            text = f"error: the arguments of {call.name} must be a JSON object"
            return self._done(call, "invalid", started, text)
        limit = spec.timeout if within is None else max(0.0, min(spec.timeout, within))
        try:
            async with asyncio.timeout(limit):
                result = await source.call(call.name, arguments, seconds=limit)
        except (TimeoutError, ToolTimeoutError):
            text = f"error: {call.name} did not answer within {limit:.3g} seconds"
            return self._done(call, "timeout", started, text)
        except ToolError as exc:
            return self._done(call, "error", started, f"error: {exc.message}")
        outcome: ToolOutcome = "error" if result.is_error else "ok"
        return self._done(call, outcome, started, result.content, result.is_error)

    def rejected(self, call: ToolCall) -> ToolResult:
        """The result the model reads for a call the client rejected."""
        self.stats.record(self.bot_id, call.name, "rejected", 0.0)
        return ToolResult(f"the user rejected this call of {call.name}", is_error=True)

    def _done(
        self,
        call: ToolCall,
        outcome: ToolOutcome,
        started: float,
        content: str,
        is_error: bool = True,
    ) -> ToolResult:
        seconds = time.perf_counter() - started
        self.stats.record(self.bot_id, call.name, outcome, seconds)
        span = tracing.current_span()  # the call's, from run()
        span.set_attribute("kubebots.tool.outcome", outcome)
        if outcome != "ok":
            tracing.failed(span, outcome)
            log.warning(
                "bot %s: tool %s call %s failed (%s, %.3fs)",
                self.bot_id,
                call.name,
                call.id,
                outcome,
                seconds,
                extra={"event": "tool_failed", "bot_id": self.bot_id, "tool": call.name},
            )
        return ToolResult(content, is_error=is_error if outcome == "ok" else True)

    async def close(self) -> None:
        """Close every source (idempotent)."""
        if self._closed:
            return
        self._closed = True
        results = await asyncio.gather(*(s.close() for s in self._sources), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.warning("bot %s: closing a tool source failed: %r", self.bot_id, result)


def arguments_of(call: ToolCall) -> Any:
    """The call's arguments as JSON (``None`` when they are not valid JSON)."""
    try:
        return json.loads(call.arguments or "{}")
    except ValueError:
        return None
