"""What this replica serves and why not: the errors behind its replica report (with their
machine-readable reason, e.g. ``ToolUnavailable``), the bots a fallback LLM endpoint answers
for, and the tools each bot's MCP servers offer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..configstore.base import BotReport


@dataclass(frozen=True, slots=True)
class BotProblem:
    error: str
    revision: int
    reason: str | None = None  # e.g. "ToolUnavailable" (None: a plain error)


class ServingStatus:
    """Per-bot problems (a config that failed to validate or build) since the last good one."""

    def __init__(self) -> None:
        self._problems: dict[str, BotProblem] = {}

    def failed(self, bot_id: str, error: str, revision: int, *, reason: str | None = None) -> None:
        self._problems[bot_id] = BotProblem(error[:1000], revision, reason)

    def ok(self, bot_id: str) -> None:
        self._problems.pop(bot_id, None)

    def problem(self, bot_id: str) -> BotProblem | None:
        return self._problems.get(bot_id)

    def keep_only(self, bot_ids: set[str]) -> None:
        for bot_id in [b for b in self._problems if b not in bot_ids]:
            del self._problems[bot_id]

    def reports(
        self,
        served: Mapping[str, tuple[int, int]],
        fallbacks: Mapping[str, str] | None = None,
        tools: Mapping[str, Mapping[str, int]] | None = None,
    ) -> tuple[BotReport, ...]:
        """Bot reports for every bot with a problem, served by a fallback LLM endpoint or
        offering MCP tools (the others need none: reports stay small); ``served`` maps bot id
        to (gen, rev), ``fallbacks`` to the ``model@host`` of the fallback that answered its
        last call, ``tools`` to its tool counts by source label (only ``mcp:<server>`` ones are
        reported, by server name)."""
        fallbacks = fallbacks or {}
        mcp = {bot_id: mcp_counts(counts) for bot_id, counts in (tools or {}).items()}
        mcp = {bot_id: counts for bot_id, counts in mcp.items() if counts}
        out = []
        for bot_id in sorted(self._problems.keys() | fallbacks.keys() | mcp.keys()):
            problem = self._problems.get(bot_id)
            version = served.get(bot_id)
            out.append(
                BotReport(
                    bot_id=bot_id,
                    generation=version[0] if version else None,
                    revision=version[1] if version else None,
                    error=problem.error if problem else None,
                    error_revision=problem.revision if problem else None,
                    served_by=fallbacks.get(bot_id),
                    reason=problem.reason if problem else None,
                    tools=mcp.get(bot_id, ()),
                )
            )
        return tuple(out)

    def __len__(self) -> int:
        return len(self._problems)


def mcp_counts(counts: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    """The ``mcp:<server>`` entries of a toolset's counts as sorted ``(server, tools)`` pairs."""
    return tuple(
        sorted((label[4:], count) for label, count in counts.items() if label.startswith("mcp:"))
    )
