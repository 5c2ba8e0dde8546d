"""A replica reports which ``llm.fallbacks`` endpoint answers for a bot whose primary fails, and
stops once the primary answers again; bots served by their primary stay out of the report."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kubebots.runtime import BotContext
from kubebots.runtime.configstore import BotReport, ReplicaReport, ReportingConfigStore
from kubebots.runtime.factory import BotFactory
from kubebots.runtime.llm.stats import endpoint_label
from kubebots.runtime.testing import FakeOpenAIServer

from .conftest import make_runtime

KEY = "sk-test-0000000001"
CTX = BotContext(conversation_id="c", client_id="t")


@pytest.fixture
def upstreams() -> Iterator[tuple[FakeOpenAIServer, FakeOpenAIServer]]:
    with FakeOpenAIServer(api_key=KEY) as first, FakeOpenAIServer(api_key=KEY) as second:
        yield first, second


def spec(primary: FakeOpenAIServer, backup: FakeOpenAIServer) -> dict[str, Any]:
    return {
        "llm": {
            "provider": "openai",
            "model": "primary-model",
            "baseUrl": primary.base_url,
            "apiKeyEnv": "KEY",
            "maxRetries": 0,
            "cooldownSeconds": 0,  # the primary is asked again on the next call
            "fallbacks": [
                {"model": "backup-model", "baseUrl": backup.base_url, "apiKeyEnv": "KEY"}
            ],
        },
        "systemPrompt": "sys",
    }


async def stored_report(
    store: ReportingConfigStore, until: Callable[[ReplicaReport], object]
) -> ReplicaReport:
    """The replica's report in the store once ``until(report)`` holds (bounded wait)."""
    async with asyncio.timeout(10):
        while True:
            reports = await store.replica_reports(max_age_seconds=60)
            if reports and until(reports[0]):
                return reports[0]
            await asyncio.sleep(0.02)


async def test_the_fallback_serving_a_bot_is_reported_until_the_primary_answers(
    store: ReportingConfigStore, upstreams: tuple[FakeOpenAIServer, FakeOpenAIServer]
) -> None:
    first, second = upstreams
    rev = await store.put("ns:a", spec(first, second), generation=4, uid="u")
    await store.put("ns:b", spec(first, second), generation=1, uid="u")
    manager, sync = make_runtime(store, factory=BotFactory(env={"KEY": KEY}))
    backup = endpoint_label("backup-model", second.base_url)
    async with manager, sync:
        await sync.ready.wait()
        a = await manager.get_or_create("ns:a")
        b = await manager.get_or_create("ns:b")
        assert await b.chat("hi", CTX) == "[primary-model] sys | hi"
        assert sync.report().bots == ()  # a primary serving is no news

        first.inject(503)
        assert await a.chat("hi", CTX) == "[backup-model] sys | hi"
        expected = (BotReport("ns:a", 4, rev, served_by=backup),)
        assert a.serving_fallback == backup and b.serving_fallback is None
        assert sync.report().bots == expected
        # the next heartbeat takes it to the store
        assert (await stored_report(store, lambda r: r.bots)).bots == expected

        assert await a.chat("again", CTX) == "[primary-model] sys | again"
        assert a.serving_fallback is None and sync.report().bots == ()
        assert (await stored_report(store, lambda r: not r.bots)).bots == ()


async def test_a_fallback_and_an_error_share_one_bot_report(
    store: ReportingConfigStore, upstreams: tuple[FakeOpenAIServer, FakeOpenAIServer]
) -> None:
    first, second = upstreams
    rev = await store.put("ns:a", spec(first, second), generation=1, uid="u")
    manager, sync = make_runtime(store, factory=BotFactory(env={"KEY": KEY}))
    async with manager, sync:
        await sync.ready.wait()
        bot = await manager.get_or_create("ns:a")
        first.inject(502)
        await bot.chat("hi", CTX)
        bad = await store.put("ns:a", {"llm": {"provider": "nope"}}, generation=2, uid="u")
        async with asyncio.timeout(10):
            while sync.synced_revision < bad:
                await asyncio.sleep(0.01)
        (report,) = sync.report().bots
        assert (report.generation, report.revision, report.error_revision) == (1, rev, bad)
        assert report.error is not None
        assert report.served_by == endpoint_label("backup-model", second.base_url)
