"""Which runtime replicas serve a bot's store revision: the one rule the operator's ``Ready``
and ``kubebots status`` share.

A live replica (its heartbeat young enough: the caller reads the reports with a ``max_age``)
serves ``revision`` of a bot when it has applied that revision (``synced_revision``) and reports
no error for the bot at that revision or a newer one. A replica reporting such an error counts
among the replicas, not among those serving; its message (and its machine-readable reason, e.g.
``ToolUnavailable``) is kept. Pure: nothing here reads the store.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from .base import ReplicaReport


@dataclass(frozen=True)
class Serving:
    replicas: int
    served: int
    errors: tuple[str, ...] = ()
    #: the fallback LLM endpoints answering for the bot: ``(model@host, replicas)``, sorted
    fallbacks: tuple[tuple[str, int], ...] = ()
    #: the machine-readable reasons of ``errors`` (e.g. ``ToolUnavailable``), sorted
    reasons: tuple[str, ...] = ()
    #: the bot's MCP servers: ``(name, tools, replicas)``, sorted by name; ``tools`` is the
    #: count most of the ``replicas`` reporting the server discovered (the smaller on a tie)
    tools: tuple[tuple[str, int, int], ...] = ()


def serving_from(reports: Sequence[ReplicaReport], bot_id: str, revision: int) -> Serving:
    """How the live replicas of ``reports`` serve ``revision`` of ``bot_id``."""
    served = 0
    errors: list[str] = []
    reasons: set[str] = set()
    fallbacks: Counter[str] = Counter()
    tools: dict[str, Counter[int]] = {}
    for report in reports:
        mine = next((b for b in report.bots if b.bot_id == bot_id), None)  # one at most
        if mine is not None and mine.served_by is not None:
            fallbacks[mine.served_by] += 1
        for server, count in mine.tools if mine is not None else ():
            tools.setdefault(server, Counter())[count] += 1
        if mine is not None and mine.error_revision is not None and mine.error_revision >= revision:
            errors.append(f"replica {report.replica_id}: {mine.error}")
            if mine.reason is not None:
                reasons.add(mine.reason)
        elif report.synced_revision >= revision:
            served += 1
    return Serving(
        replicas=len(reports),
        served=served,
        errors=tuple(errors),
        fallbacks=tuple(sorted(fallbacks.items())),
        reasons=tuple(sorted(reasons)),
        tools=tuple(_agreed(server, counts) for server, counts in sorted(tools.items())),
    )


def _agreed(server: str, counts: Counter[int]) -> tuple[str, int, int]:
    """``(server, the count most replicas report (the smaller on a tie), replicas)``."""
    count = min(counts, key=lambda c: (-counts[c], c))
    return server, count, counts.total()
