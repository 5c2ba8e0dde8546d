"""Helpers shared by the sync tests."""

from __future__ import annotations

import asyncio

from kubebots.runtime.sync import StoreSync


async def wait_synced(revision: int, sync: StoreSync, seconds: float = 10.0) -> None:
    """Wait until ``sync`` has applied every store event up to ``revision``."""
    async with asyncio.timeout(seconds):
        while sync.synced_revision < revision:
            await asyncio.sleep(0.001)
