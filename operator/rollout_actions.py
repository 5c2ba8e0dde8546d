"""What ``kubebots rollout promote|abort|retry`` asks, and how it waits for the result.

The command merge-patches the Bot's annotation ``kubebots.io/rollout-action`` to
``"<action> <UTC time, RFC 3339>"`` (the operator acts on each value once), after checking the
rollout's phase admits the action; ``--wait`` reads the Bot until its status shows it done.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from kubebots.runtime.schema import API_GROUP

from .rollout_bots_api import BotRef, BotsApi, RolloutCliError
from .rollout_view import condition, describe_status, status_rollout, where
from .rollouts import ACTION_ANNOTATION as ROLLOUT_ACTION

#: The Bot annotation the operator reads the asked actions from.
#: the annotation the operator reads (its default ``annotation_prefix``)
ACTION_ANNOTATION: Final = f"{API_GROUP}/{ROLLOUT_ACTION}"
ACTIONS: Final = ("promote", "abort", "retry")
#: Seconds between two reads of the Bot while waiting.
POLL_INTERVAL: Final = 1.0
#: The phases an action applies to (the operator ignores it in the others).
ACTION_PHASES: Final[Mapping[str, frozenset[str]]] = {
    "promote": frozenset({"Progressing", "RolledBack", "Aborted"}),
    "abort": frozenset({"Progressing"}),
    "retry": frozenset({"RolledBack", "Aborted"}),
}
#: What ``--wait`` prints once the status shows an action done.
RESULTS: Final = {"promote": "promoted", "abort": "aborted", "retry": "retried"}


def action_value(action: str, now: datetime) -> str:
    """The annotation value asking for ``action`` at ``now``: ``promote 2026-12-06T02:00:00Z``."""
    stamp = now.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return f"{action} {stamp}"


def done(action: str, bot: Mapping[str, Any], before: Mapping[str, Any]) -> bool:
    """Whether ``bot``'s status shows ``action`` done (``before``: the rollout when asked)."""
    rollout = status_rollout(bot) or {}
    if action == "promote":
        ready = condition(bot, "Ready")
        generation = (bot.get("metadata") or {}).get("generation")
        observed = ready.get("observedGeneration", generation) if ready else None
        settled = rollout.get("phase") in (None, "Promoted")
        return bool(settled and ready and ready.get("status") == "True" and observed == generation)
    if action == "abort":
        return rollout.get("phase") == "Aborted"
    attempt, earlier = rollout.get("attempt"), before.get("attempt")
    return (
        rollout.get("phase") == "Progressing"
        and isinstance(attempt, int)
        and (not isinstance(earlier, int) or attempt > earlier)
    )


def wait_for(
    client: BotsApi,
    ref: BotRef,
    action: str,
    before: Mapping[str, Any],
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    interval: float = POLL_INTERVAL,
) -> Mapping[str, Any]:
    """Read the Bot every ``interval`` seconds until its status shows ``action`` done; the Bot
    then. Raises :class:`RolloutCliError` after ``timeout`` seconds, or when the Bot is gone."""
    deadline = clock() + timeout
    while True:
        bot = _read(client, ref)
        if done(action, bot, before):
            return bot
        remaining = deadline - clock()
        if remaining <= 0:
            raise RolloutCliError(f"Bot {ref}: {action} not done after {timeout:g} s: {where(bot)}")
        sleep(min(interval, remaining))


def _read(client: BotsApi, ref: BotRef) -> Mapping[str, Any]:
    bot = client.get(ref.namespace, ref.name)
    if bot is None:
        raise RolloutCliError(f"Bot {ref} not found")
    return bot


def _rollout(ref: BotRef, bot: Mapping[str, Any]) -> Mapping[str, Any]:
    rollout = status_rollout(bot)
    if rollout is None:
        raise RolloutCliError(
            f"Bot {ref} has no rollout (its spec has no rollout section, or no change of it "
            "has been rolled out yet)"
        )
    return rollout


def show_status(client: BotsApi, ref: BotRef, output: str, out: TextIO) -> None:
    bot = _read(client, ref)
    rollout = _rollout(ref, bot)
    if output == "json":
        print(json.dumps(rollout, indent=2), file=out)
    else:
        print(describe_status(ref, bot, rollout), file=out)


def ask(
    client: BotsApi,
    ref: BotRef,
    action: str,
    now: datetime,
    out: TextIO,
) -> Mapping[str, Any]:
    """Write the action's annotation (if the rollout's phase admits it); the rollout before."""
    rollout = _rollout(ref, _read(client, ref))
    phase = rollout.get("phase")
    if phase not in ACTION_PHASES[action]:
        admitted = " or ".join(sorted(ACTION_PHASES[action]))
        raise RolloutCliError(
            f"Bot {ref}: cannot {action} a rollout in phase {phase} (only when {admitted})"
        )
    value = action_value(action, now)
    if not client.annotate(ref.namespace, ref.name, ACTION_ANNOTATION, value):
        raise RolloutCliError(f"Bot {ref} not found")
    print(f"Bot {ref}: asked to {action} ({ACTION_ANNOTATION}={value})", file=out, flush=True)
    return rollout
