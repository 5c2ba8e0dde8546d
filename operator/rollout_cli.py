"""``kubebots rollout status|promote|abort|retry BOT``: a Bot's rollout, without kubectl.

``status`` prints the Bot's ``status.rollout`` as the operator wrote it: the phase, the step,
the candidate's share, the generations, the last analysis' figures of the stable generation and
the candidate side by side, and the ``Progressing``/``Degraded`` conditions (``-o json``: the raw
``status.rollout``).

``promote``, ``abort`` and ``retry`` ask the operator: they merge-patch the Bot's annotation
``kubebots.io/rollout-action`` to ``"<action> <UTC time, RFC 3339>"``; the operator acts on each
value once, so asking again later is a new request. ``--wait SECONDS`` then reads the Bot until
its status shows the result (promote: ``Ready`` True; abort: phase ``Aborted``; retry: phase
``Progressing`` with a newer attempt).

The API is reached as the operator reaches it (:class:`ClusterAccess`: in a pod its service
account, else the kubeconfig). Registered through the ``kubebots.commands`` entry point group,
so the runtime never imports it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol, TextIO

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from kubebots.runtime.kube_config import ClusterAccess, ClusterAccessError
from kubebots.runtime.schema import API_GROUP, API_VERSION, PLURAL, split_bot_id

from .kube import describe_api_error, status_kind
from .rollouts import ACTION_ANNOTATION as ROLLOUT_ACTION

#: The Bot annotation the operator reads the asked actions from.
#: the annotation the operator reads (its default ``annotation_prefix``)
ACTION_ANNOTATION: Final = f"{API_GROUP}/{ROLLOUT_ACTION}"
ACTIONS: Final = ("promote", "abort", "retry")
#: Seconds one API call may take (a hung API must not hang the command).
REQUEST_TIMEOUT: Final = 10.0
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
#: The analysis figures ``status`` shows, in order: (status key, label, unit).
FIGURES: Final = (
    ("turns", "turns", ""),
    ("errors", "errors", ""),
    ("errorRatePercent", "error rate", "%"),
    ("p95Ms", "p95 latency", " ms"),
    ("tokensPerTurn", "tokens/turn", ""),
    ("flaggedPercent", "flagged", "%"),
)


class RolloutCliError(Exception):
    """The command cannot do what was asked; the message says why (never a secret)."""


class BotsApi(Protocol):
    """The two API calls the command makes on Bots."""

    def get(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The Bot as the API returns it; ``None`` when there is no such Bot."""
        ...

    def annotate(self, namespace: str, name: str, key: str, value: str) -> bool:
        """Merge-patch one annotation of the Bot; ``False`` when there is no such Bot."""
        ...


@dataclass(frozen=True, slots=True)
class BotRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def parse_ref(text: str, namespace: str | None) -> BotRef:
    """``NAME``, ``NAMESPACE/NAME`` or ``NAMESPACE:NAME`` (the bot id) as a Bot reference; a
    bare name is in ``namespace`` (``-n``), else in ``default``."""
    if "/" in text or ":" in text:
        parts = split_bot_id(text.replace("/", ":", 1))
        if parts is None or ":" in parts[1] or "/" in parts[1]:
            raise RolloutCliError(f"not a Bot: {text!r} (NAME, NAMESPACE/NAME or NAMESPACE:NAME)")
        if namespace is not None and namespace != parts[0]:
            raise RolloutCliError(f"{text!r} is in namespace {parts[0]!r}, not {namespace!r}")
        return BotRef(*parts)
    if not text:
        raise RolloutCliError("name a Bot: NAME, NAMESPACE/NAME or NAMESPACE:NAME")
    return BotRef(namespace or "default", text)


def action_value(action: str, now: datetime) -> str:
    """The annotation value asking for ``action`` at ``now``: ``promote 2026-12-06T02:00:00Z``."""
    stamp = now.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return f"{action} {stamp}"


# -- reading a Bot's status ----------------------------------------------------------------------


def rollout_of(bot: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The Bot's ``status.rollout`` (None: the operator reports no rollout)."""
    rollout = (bot.get("status") or {}).get("rollout")
    return rollout if isinstance(rollout, Mapping) and rollout else None


def condition(bot: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    """The Bot's status condition of type ``kind``, if any."""
    for cond in (bot.get("status") or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == kind:
            return cond
    return None


def headline(rollout: Mapping[str, Any]) -> str:
    """The rollout in one line: phase, step, share and generations."""
    phase = rollout.get("phase", "?")
    candidate, stable = rollout.get("candidateGeneration"), rollout.get("stableGeneration")
    weight = rollout.get("weight", 0)
    parts = [f"phase {phase}"]
    if rollout.get("step") is not None:
        parts.append(f"step {rollout['step']}/{rollout.get('steps', '?')}")
    if rollout.get("shadow"):
        parts.append(f"shadow: {weight}% of turns mirrored to generation {candidate}")
    else:
        parts.append(f"{weight}% of new conversations to generation {candidate}")
    parts.append(f"stable generation {stable}")
    if rollout.get("attempt") is not None:
        parts.append(f"attempt {rollout['attempt']}")
    return ", ".join(parts)


def _figure(figures: Mapping[str, Any], key: str, unit: str) -> str:
    value = figures.get(key)
    if value is None:
        return "-"
    return f"{value:g}{unit}" if isinstance(value, float) else f"{value}{unit}"


def figures_table(rollout: Mapping[str, Any], analysis: Mapping[str, Any]) -> list[str]:
    """The last analysis' figures, stable and candidate side by side, under their
    generations."""
    stable = analysis.get("stable") or {}
    candidate = analysis.get("candidate") or {}
    generations = (rollout.get("stableGeneration", "?"), rollout.get("candidateGeneration", "?"))
    lines = [
        f"  {'':<12} {'STABLE':>12} {'CANDIDATE':>12}",
        f"  {'generation':<12} {generations[0]!s:>12} {generations[1]!s:>12}",
    ]
    for key, label, unit in FIGURES:
        lines.append(
            f"  {label:<12} {_figure(stable, key, unit):>12} {_figure(candidate, key, unit):>12}"
        )
    return lines


def describe_status(ref: BotRef, bot: Mapping[str, Any], rollout: Mapping[str, Any]) -> str:
    """``kubebots rollout status``'s table."""
    lines = [f"Bot {ref}: {headline(rollout)}"]
    if rollout.get("stepStartedAt"):
        lines.append(f"  step started at {rollout['stepStartedAt']}")
    if rollout.get("message"):
        lines.append(f"  {rollout['message']}")
    analysis = rollout.get("analysis")
    if isinstance(analysis, Mapping) and analysis:
        lines.append("analysis (last comparison):")
        lines += figures_table(rollout, analysis)
    conditions = [c for c in (condition(bot, t) for t in ("Progressing", "Degraded")) if c]
    if conditions:
        lines.append(f"  {'CONDITION':<12} {'STATUS':<7} {'REASON':<20} MESSAGE")
        for c in conditions:
            lines.append(
                f"  {c.get('type', ''):<12} {c.get('status', ''):<7} {c.get('reason', ''):<20} "
                f"{c.get('message', '')}"
            )
    return "\n".join(lines)


# -- waiting for an action's result --------------------------------------------------------------


def done(action: str, bot: Mapping[str, Any], before: Mapping[str, Any]) -> bool:
    """Whether ``bot``'s status shows ``action`` done (``before``: the rollout when asked)."""
    rollout = rollout_of(bot) or {}
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


def where(bot: Mapping[str, Any]) -> str:
    """What the Bot's status shows now, for a wait that timed out."""
    rollout = rollout_of(bot)
    ready = condition(bot, "Ready") or {}
    parts = [headline(rollout) if rollout else "no rollout"]
    if ready:
        parts.append(f"Ready {ready.get('status')} ({ready.get('reason')}: {ready.get('message')})")
    return "; ".join(parts)


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


# -- the commands --------------------------------------------------------------------------------


def _read(client: BotsApi, ref: BotRef) -> Mapping[str, Any]:
    bot = client.get(ref.namespace, ref.name)
    if bot is None:
        raise RolloutCliError(f"Bot {ref} not found")
    return bot


def _rollout(ref: BotRef, bot: Mapping[str, Any]) -> Mapping[str, Any]:
    rollout = rollout_of(bot)
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


# -- the adapter on the official client ----------------------------------------------------------


class KubeBotsApi:
    """:class:`BotsApi` on the official client's ``CustomObjectsApi``; every call bounded by
    :data:`REQUEST_TIMEOUT`."""

    def __init__(self, custom: Any) -> None:
        self._custom = custom

    def get(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        try:
            bot: Mapping[str, Any] = self._custom.get_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, name, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as exc:
            if _bot_missing(exc):
                return None
            raise
        return bot

    def annotate(self, namespace: str, name: str, key: str, value: str) -> bool:
        try:
            self._custom.patch_namespaced_custom_object(
                API_GROUP,
                API_VERSION,
                namespace,
                PLURAL,
                name,
                {"metadata": {"annotations": {key: value}}},
                _content_type="application/merge-patch+json",
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as exc:
            if _bot_missing(exc):
                return False
            raise
        return True


def _bot_missing(exc: ApiException) -> bool:
    # The Bot's own 404 names its kind; a resource not served (no CRD) is a bare 404 page.
    return exc.status == 404 and status_kind(exc) == PLURAL


def _connect(env: Mapping[str, str]) -> BotsApi:
    """In-cluster credentials in a pod, else the kubeconfig (:class:`ClusterAccess`)."""
    from kubernetes import client

    return KubeBotsApi(client.CustomObjectsApi(ClusterAccess(env).api_client()))


def _api_failure(exc: BaseException, ref: BotRef, verb: str) -> str:
    why = describe_api_error(exc)
    if isinstance(exc, ApiException) and exc.status == 403:
        return f"Bot {ref}: {why} (grant `{verb}` on {PLURAL}.{API_GROUP} in {ref.namespace})"
    if isinstance(exc, ApiException) and exc.status == 404:
        return f"Bot {ref}: {why} (is the CustomResourceDefinition {PLURAL}.{API_GROUP} installed?)"
    return f"Bot {ref}: {why}"


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"not a number of seconds >= 0: {text!r}")
    return value


def add_parser(sub: Any) -> None:
    """Register ``kubebots rollout`` (the ``kubebots.commands`` entry point)."""
    p: argparse.ArgumentParser = sub.add_parser(
        "rollout",
        help="a Bot's rollout: status, or ask the operator to promote, abort or retry it",
        description=(
            "Show a Bot's rollout (status.rollout), or ask the operator to promote, abort or "
            f"retry it through the annotation {ACTION_ANNOTATION}."
        ),
    )
    verbs = p.add_subparsers(dest="rollout_command", metavar="ACTION", required=True)
    helps = {
        "status": "the phase, step, share, generations, analysis figures and conditions",
        "promote": "give the candidate all traffic now (then Ready once served)",
        "abort": "stop the rollout: every conversation back to the stable generation",
        "retry": "start a rolled back or aborted rollout again from its first step",
    }
    for verb, text in helps.items():
        v: argparse.ArgumentParser = verbs.add_parser(verb, help=text, description=text)
        v.add_argument("bot", metavar="BOT", help="NAME, NAMESPACE/NAME or NAMESPACE:NAME")
        v.add_argument("-n", "--namespace", help="the Bot's namespace (default: default)")
        if verb == "status":
            v.add_argument("-o", "--output", choices=["table", "json"], default="table")
        else:
            v.add_argument(
                "--wait",
                type=_seconds,
                metavar="SECONDS",
                help="wait at most this long until the Bot's status shows the result",
            )
    p.set_defaults(handler=run_rollout)


def run_rollout(
    args: argparse.Namespace,
    env: Mapping[str, str],
    *,
    connect: Callable[[Mapping[str, str]], BotsApi] = _connect,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    interval: float = POLL_INTERVAL,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """The command: 0 when done, 1 otherwise (the reason on stderr)."""
    stdout, stderr = out or sys.stdout, err or sys.stderr
    action: str = args.rollout_command
    try:
        ref = parse_ref(args.bot, args.namespace)
    except RolloutCliError as exc:
        print(f"error: {exc}", file=stderr)
        return 1
    try:
        client = connect(env)
        if action == "status":
            show_status(client, ref, args.output, stdout)
            return 0
        before = ask(client, ref, action, now(), stdout)
        if args.wait is not None:
            bot = wait_for(
                client, ref, action, before, args.wait, clock=clock, sleep=sleep, interval=interval
            )
            rollout = rollout_of(bot)
            print(
                f"Bot {ref}: {RESULTS[action]} ({headline(rollout) if rollout else where(bot)})",
                file=stdout,
            )
    except (RolloutCliError, ClusterAccessError) as exc:
        print(f"error: {exc}", file=stderr)
        return 1
    except (ApiException, HTTPError, OSError) as exc:
        verb = "get" if action == "status" else "patch"
        print(f"error: {_api_failure(exc, ref, verb)}", file=stderr)
        return 1
    return 0


__all__ = [
    "ACTIONS",
    "ACTION_ANNOTATION",
    "BotRef",
    "BotsApi",
    "KubeBotsApi",
    "RolloutCliError",
    "action_value",
    "add_parser",
    "describe_status",
    "parse_ref",
    "run_rollout",
]
