"""API test fixtures: every test starts and ends with no process-wide bot manager."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kubebots.runtime.api import manager_registry


@pytest.fixture(autouse=True)
def no_singleton_manager() -> Iterator[None]:
    manager_registry._REGISTRY.manager = None
    yield
    # A test that left a manager behind: drop it without closing (its loop may be gone).
    manager_registry._REGISTRY.manager = None
