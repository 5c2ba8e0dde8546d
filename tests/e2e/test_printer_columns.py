"""What ``kubectl`` shows of a Bot on the real kube-apiserver: the printer columns (``get``,
``-o wide``, the short name ``kb``), the field descriptions (``explain``) and the events the
operator posts, one per transition.

Same session ``stack`` as test_scenarios.py (one operator, one runtime, PostgreSQL store).
"""

from __future__ import annotations

import time

from tests.e2e.conftest import Stack
from tests.e2e.test_scenarios import bot_yaml, echo_spec


def reasons(stack: Stack, name: str) -> list[tuple[str, str]]:
    """``(type, reason)`` of the events on Bot ``name``, oldest first."""
    return [(e["type"], e["reason"]) for e in stack.events(name)]


def wait_events(stack: Stack, name: str, wanted: set[tuple[str, str]]) -> list[tuple[str, str]]:
    deadline = time.monotonic() + 30
    while True:
        seen = reasons(stack, name)
        if wanted <= set(seen) or time.monotonic() > deadline:
            return seen
        time.sleep(0.3)


def test_kubectl_get_bots_shows_ready_reason_model_served(stack: Stack) -> None:
    stack.apply(bot_yaml(stack.ns, "columns", echo_spec("columns")))
    stack.wait_ready("columns")
    table = stack.kubectl("-n", stack.ns, "get", "kb", "columns").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "REASON", "MODEL", "SERVED", "AGE"]
    assert table[1].split()[:5] == ["columns", "True", "Serving", "echo-1", "1/1"]
    wide = stack.kubectl("-n", stack.ns, "get", "bots", "columns", "-o", "wide").stdout
    head, row = wide.splitlines()
    assert head.split()[-1] == "MESSAGE"
    assert row.endswith("served by 1/1 runtime replicas")
    # (the spec keeps unknown fields: the apiserver publishes it without its properties)
    explained = stack.kubectl("explain", "bot.status.served").stdout
    assert "servedReplicas/replicas, for printing" in explained


def test_events_one_per_transition(stack: Stack) -> None:
    stack.apply(bot_yaml(stack.ns, "evented", echo_spec("first")))
    stack.wait_ready("evented")
    want = [("Normal", "Accepted"), ("Normal", "Synced"), ("Normal", "Ready")]
    seen = wait_events(stack, "evented", set(want))
    assert seen == want
    # a typo: the operator refuses it by name (the apiserver preserves unknown fields)
    stack.apply(bot_yaml(stack.ns, "evented", "llm: {provider: echo}\nsystemPromt: typo"))
    seen = wait_events(stack, "evented", {("Warning", "InvalidSpec")})
    assert seen[-1] == ("Warning", "InvalidSpec")
    time.sleep(3)  # status ticks meanwhile post nothing more
    assert reasons(stack, "evented") == seen
    stack.kubectl("-n", stack.ns, "delete", "bot", "evented", "--wait=true", check=True)
    seen = wait_events(stack, "evented", {("Normal", "Deleted")})
    assert seen[-1] == ("Normal", "Deleted")
