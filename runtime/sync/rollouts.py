"""``RolloutSync``: the replica's routing table and turn counters, kept in step with the
store's candidate entries, and the counters' share of the replica report.

A candidate entry (``NAMESPACE:NAME@candidate``) with a :class:`RolloutState` in its
annotations puts the Bot's rollout into the :class:`RolloutTable` (keyed by the Bot's own id,
what routing asks by); a new state keeps only the counts of its window; the entry's delete
(promotion, or the Bot deleted) takes the rollout out and forgets its counts. The sync calls
this beside its usual handling of the entry (validation, the BotManager), so the table never
needs a read of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace

from ..configstore.base import BotReport, StoreEntry
from ..configstore.rollout import decode_state, is_candidate, stable_id
from ..routing import ActiveRollout, RolloutCounters, RolloutTable
from ..schema import BotConfig


def rollout_of(entry: StoreEntry, config: BotConfig | None) -> ActiveRollout | None:
    """The rollout a candidate entry describes (None: not a candidate entry, or no state this
    version reads). ``config`` is the entry's parsed spec, None when it is invalid: such a
    candidate takes no traffic on this replica (its weight is taken as 0; its error is in the
    replica report, and the operator decides)."""
    if not is_candidate(entry.bot_id):
        return None
    state = decode_state(entry.annotations)
    if state is None:
        return None
    if config is None:
        state = state.evolve(weight=0)
    analysis = config.rollout.analysis if config is not None and config.rollout else None
    pattern = analysis.flag_reply_pattern if analysis is not None else None
    return ActiveRollout(
        bot_id=stable_id(entry.bot_id),
        candidate_id=entry.bot_id,
        state=state,
        candidate_generation=entry.generation,
        candidate_revision=entry.revision,
        flag=re.compile(pattern) if pattern else None,
    )


class RolloutSync:
    """Writes the routing table and trims the counters as candidate entries come and go."""

    def __init__(self, table: RolloutTable, counters: RolloutCounters) -> None:
        self.table = table
        self.counters = counters

    def put(self, entry: StoreEntry, config: BotConfig | None) -> ActiveRollout | None:
        """A candidate entry was written: its rollout, now in the table (None: not a rollout;
        a candidate entry whose state cannot be read is no rollout either)."""
        rollout = rollout_of(entry, config)
        if rollout is None:
            if is_candidate(entry.bot_id):
                self.delete(entry.bot_id)
            return None
        self.table.set(rollout)
        self.counters.keep_window(rollout.bot_id, rollout.state.window)
        return rollout

    def delete(self, entry_id: str) -> None:
        """An entry was deleted: if it was a candidate, its Bot is no longer under rollout."""
        if is_candidate(entry_id):
            self.table.discard(stable_id(entry_id))
            self.counters.forget(stable_id(entry_id))

    def keep_only(self, entry_ids: Iterable[str]) -> None:
        """After a full listing: forget the rollouts whose candidate entry is gone."""
        live = {stable_id(e) for e in entry_ids if is_candidate(e)}
        for bot_id in self.table.bots():
            if bot_id not in live:
                self.table.discard(bot_id)
        for bot_id in self.counters.bots():
            if bot_id not in live:
                self.counters.forget(bot_id)

    def reports(
        self, reports: tuple[BotReport, ...], served: Mapping[str, tuple[int, int]]
    ) -> tuple[BotReport, ...]:
        """``reports`` with every Bot under rollout (or with counts) carrying its counts:
        merged into the Bot's report if it has one, else a new one with the version this
        replica serves of the Bot (``served``: bot id -> (generation, revision)), sorted."""
        by_bot = {report.bot_id: report for report in reports}
        for bot_id in sorted(set(self.table.bots()) | set(self.counters.bots())):
            counts = self.counters.snapshot(bot_id)
            report = by_bot.get(bot_id)
            if report is None:
                version = served.get(bot_id)
                report = BotReport(
                    bot_id,
                    generation=version[0] if version else None,
                    revision=version[1] if version else None,
                )
            by_bot[bot_id] = replace(report, rollout=counts)
        return tuple(by_bot[bot_id] for bot_id in sorted(by_bot))
