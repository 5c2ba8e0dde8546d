"""Polling with a deadline, for tests and the harness."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None],
    what: str,
    timeout: float = 60.0,
    interval: float = 0.2,
    on_fail: Callable[[], str] | None = None,
) -> T:
    """Poll ``probe`` until it returns something truthy; AssertionError (with logs) at deadline."""
    deadline = time.monotonic() + timeout
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            extra = on_fail() if on_fail else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{extra}")
        time.sleep(interval)
