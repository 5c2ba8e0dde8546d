"""Replica reports, shared by every backend: what a report may hold, and rows back to reports."""

from __future__ import annotations

import json
from typing import Any

from ..ids import validate_bot_id
from ..persistence.checks import check_text
from ..persistence.times import to_utc
from .base import BotReport, ReplicaReport
from .codec import check_revision
from .counters import check_counters, decode_counters, encode_counters


def check_report(report: ReplicaReport) -> ReplicaReport:
    """``report`` if every field is storable; its ``heartbeat_at`` is ignored by the stores."""
    if not isinstance(report, ReplicaReport):
        raise TypeError("report must be a ReplicaReport")
    if not check_text("replica_id", report.replica_id):
        raise ValueError("replica_id must not be empty")
    check_revision("synced_revision", report.synced_revision)
    seen: set[str] = set()
    for bot in report.bots:
        if not isinstance(bot, BotReport):
            raise TypeError("report.bots must hold BotReport values")
        validate_bot_id(bot.bot_id)
        if bot.bot_id in seen:
            raise ValueError("report.bots must not name a bot twice")
        seen.add(bot.bot_id)
        check_revision("a bot report's generation", bot.generation, optional=True)
        check_revision("a bot report's revision", bot.revision, optional=True)
        check_revision("a bot report's error_revision", bot.error_revision, optional=True)
        if bot.error is not None:
            check_text("a bot report's error", bot.error)
        if bot.served_by is not None and not check_text("a bot report's served_by", bot.served_by):
            raise ValueError("a bot report's served_by must not be empty")
        if bot.reason is not None and not check_text("a bot report's reason", bot.reason):
            raise ValueError("a bot report's reason must not be empty")
        _check_tools(bot.tools)
        check_counters(bot.rollout)
    return report


def _check_tools(tools: object) -> None:
    """``tools`` must be ``(name, count)`` pairs, sorted by name, each name once."""
    if not isinstance(tools, tuple):
        raise TypeError("a bot report's tools must be a tuple of (name, count) pairs")
    names: list[str] = []
    for pair in tools:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise TypeError("a bot report's tools must be a tuple of (name, count) pairs")
        name, count = pair
        if not check_text("a bot report's tool source", name):
            raise ValueError("a bot report's tool source must not be empty")
        check_revision("a bot report's tool count", count)
        names.append(name)
    if names != sorted(set(names)):
        raise ValueError("a bot report's tools must be sorted by name, each name once")


def encode_tools(tools: tuple[tuple[str, int], ...]) -> str | None:
    """A report's tool counts as compact JSON text (``{"files":2}``; None for none)."""
    return json.dumps(dict(tools), separators=(",", ":")) if tools else None


def decode_tools(text: str | None) -> tuple[tuple[str, int], ...]:
    """:func:`encode_tools`'s text back as sorted ``(name, count)`` pairs."""
    if not text:
        return ()
    return tuple(sorted((str(name), int(count)) for name, count in json.loads(text).items()))


def group_reports(rows: list[tuple[Any, ...]]) -> list[ReplicaReport]:
    """Rows ``(replica_id, synced_revision, heartbeat_at, bot_id, generation, revision, error,
    error_revision, served_by, reason, tools, rollout)`` ordered by replica then bot (bot
    columns NULL for a replica without bots) as reports; ``heartbeat_at`` is a datetime."""
    reports: list[ReplicaReport] = []
    bots: list[BotReport] = []
    for index, (replica_id, synced, heartbeat, bot_id, *rest) in enumerate(rows):
        if bot_id is not None:
            generation, revision, error, error_revision, served_by, reason, tools, rollout = rest
            bots.append(
                BotReport(
                    bot_id,
                    generation,
                    revision,
                    error,
                    error_revision,
                    served_by,
                    reason,
                    decode_tools(tools),
                    decode_counters(rollout),
                )
            )
        if index + 1 == len(rows) or rows[index + 1][0] != replica_id:
            reports.append(ReplicaReport(replica_id, int(synced), to_utc(heartbeat), tuple(bots)))
            bots = []
    return reports


def bot_rows(report: ReplicaReport) -> list[tuple[Any, ...]]:
    """The rows of a report's bots: ``(replica_id, bot_id, generation, revision, error,
    error_revision, served_by, reason, tools, rollout)``."""
    return [
        (
            report.replica_id,
            b.bot_id,
            b.generation,
            b.revision,
            b.error,
            b.error_revision,
            b.served_by,
            b.reason,
            encode_tools(b.tools),
            encode_counters(b.rollout),
        )
        for b in report.bots
    ]
