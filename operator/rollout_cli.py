"""``kubebots rollout status|promote|abort|retry BOT``: a Bot's rollout, without kubectl.

``status`` prints the Bot's ``status.rollout`` as the operator wrote it (:mod:`.rollout_view`;
``-o json``: the raw ``status.rollout``). ``promote``, ``abort`` and ``retry`` ask the operator
through the Bot's annotation ``kubebots.io/rollout-action`` (:mod:`.rollout_actions`);
``--wait SECONDS`` then reads the Bot until its status shows the result (promote: ``Ready``
True; abort: phase ``Aborted``; retry: phase ``Progressing`` with a newer attempt). The API is
reached as the operator reaches it (:mod:`.rollout_bots_api`). Registered through the
``kubebots.commands`` entry point group, so the runtime never imports it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from kubebots.runtime.kube_config import ClusterAccessError

from .rollout_actions import (
    ACTION_ANNOTATION,
    ACTIONS,
    POLL_INTERVAL,
    RESULTS,
    ask,
    show_status,
    wait_for,
)
from .rollout_bots_api import BotsApi, RolloutCliError, api_failure, connect, parse_ref
from .rollout_view import headline, status_rollout, where


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
    connect: Callable[[Mapping[str, str]], BotsApi] = connect,
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
            rollout = status_rollout(bot)
            print(
                f"Bot {ref}: {RESULTS[action]} ({headline(rollout) if rollout else where(bot)})",
                file=stdout,
            )
    except (RolloutCliError, ClusterAccessError) as exc:
        print(f"error: {exc}", file=stderr)
        return 1
    except (ApiException, HTTPError, OSError) as exc:
        verb = "get" if action == "status" else "patch"
        print(f"error: {api_failure(exc, ref, verb)}", file=stderr)
        return 1
    return 0


__all__ = ["ACTIONS", "ACTION_ANNOTATION", "add_parser", "run_rollout"]
