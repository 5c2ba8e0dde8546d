"""kstatus conditions as status entries: a transition time that moves only with the status."""

from __future__ import annotations

import re

from kubebots.operator.conditions import Condition, now_iso, render

EARLIER = "2026-01-01T00:00:00Z"
NOW = "2026-01-02T00:00:00Z"


def test_a_condition_becomes_a_status_entry() -> None:
    [entry] = render([Condition("Ready", True, "Serving", "served")], generation=3, previous=None)
    assert (entry["type"], entry["status"], entry["reason"]) == ("Ready", "True", "Serving")
    assert entry["message"] == "served" and entry["observedGeneration"] == 3
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["lastTransitionTime"])


def test_the_transition_time_holds_while_the_status_does() -> None:
    previous = [
        {"type": "Ready", "status": "False", "lastTransitionTime": EARLIER},
        {"type": "Stalled", "status": "False", "lastTransitionTime": EARLIER},
    ]
    conditions = [
        Condition("Ready", True, "Serving", "now served"),  # flipped
        Condition("Stalled", False, "NotStalled", "another message"),  # held
        Condition("Reconciling", False, "Done", ""),  # new
    ]
    got = {c["type"]: c for c in render(conditions, generation=2, previous=previous, now=NOW)}
    assert got["Ready"]["lastTransitionTime"] == NOW
    assert got["Stalled"]["lastTransitionTime"] == EARLIER
    assert got["Stalled"]["message"] == "another message"
    assert got["Reconciling"]["lastTransitionTime"] == NOW


def test_messages_are_bounded_and_junk_in_the_previous_status_is_ignored() -> None:
    long = Condition("Ready", False, "RuntimeError", "x" * 5000)
    previous: list[object] = ["not a condition", {"type": "Ready", "status": "False"}]
    [entry] = render([long], generation=1, previous=previous, now=NOW)  # type: ignore[arg-type]
    assert len(entry["message"]) == 1024
    assert entry["lastTransitionTime"] == NOW  # the previous entry had none


def test_now_is_utc_to_the_second() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", now_iso())
