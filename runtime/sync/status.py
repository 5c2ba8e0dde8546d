"""What this replica serves and why not: the errors behind its replica report, and the bots a
fallback LLM endpoint answers for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..configstore.base import BotReport


@dataclass(frozen=True, slots=True)
class BotProblem:
    error: str
    revision: int


class ServingStatus:
    """Per-bot problems (a config that failed to validate or build) since the last good one."""

    def __init__(self) -> None:
        self._problems: dict[str, BotProblem] = {}

    def failed(self, bot_id: str, error: str, revision: int) -> None:
        self._problems[bot_id] = BotProblem(error[:1000], revision)

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
    ) -> tuple[BotReport, ...]:
        """Bot reports for every bot with a problem or served by a fallback LLM endpoint (the
        others need none: reports stay small); ``served`` maps bot id to (gen, rev),
        ``fallbacks`` to the ``model@host`` of the fallback that answered its last call."""
        fallbacks = fallbacks or {}
        out = []
        for bot_id in sorted(self._problems.keys() | fallbacks.keys()):
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
                )
            )
        return tuple(out)

    def __len__(self) -> int:
        return len(self._problems)
