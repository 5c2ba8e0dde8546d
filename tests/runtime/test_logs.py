"""The JSON log lines: plain ``extra`` fields are kept, objects are left out (not their repr)."""

from __future__ import annotations

import json
import logging

from kubebots.runtime.cli.logs import JsonFormatter


class Settings:
    def __repr__(self) -> str:
        return "Settings(" + "x" * 2000 + ")"


def test_plain_extras_are_kept_and_objects_left_out() -> None:
    record = logging.makeLogRecord(
        {
            "name": "kopf.objects",
            "levelname": "INFO",
            "msg": "Handler %r succeeded.",
            "args": ("reconcile",),
            "k8s_ref": {"kind": "Bot", "name": "hello", "namespace": "default"},
            "request_id": "abc",
            "settings": Settings(),
        }
    )
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["message"] == "Handler 'reconcile' succeeded."
    assert entry["k8s_ref"] == {"kind": "Bot", "name": "hello", "namespace": "default"}
    assert entry["request_id"] == "abc"
    assert "settings" not in entry and len(line) < 400
