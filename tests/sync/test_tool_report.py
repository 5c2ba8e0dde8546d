"""A replica reports its bots' MCP servers: a server that cannot be listed is an error with the
reason ``ToolUnavailable`` (the last good version keeps serving, and the build is retried until
the server answers); the tools each server offers are counted in the report."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from kubebots.runtime import BotContext, BotManager
from kubebots.runtime.configstore import BotReport, ReportingConfigStore
from kubebots.runtime.factory import BotFactory
from kubebots.runtime.sync import StoreConfigLoader, StoreSync, SyncSettings
from kubebots.runtime.sync.status import ServingStatus, mcp_counts
from kubebots.runtime.testing.tool_servers import McpToolServer
from kubebots.runtime.tools.egress import EgressPolicy


def test_problems_carry_their_reason_and_bots_with_mcp_tools_are_reported() -> None:
    status = ServingStatus()
    status.failed("ns:down", "tool source 'mcp:files' is unavailable", 9, reason="ToolUnavailable")
    status.failed("ns:bad", "invalid config", 4)
    served = {"ns:down": (1, 7), "ns:tooled": (2, 5), "ns:plain": (1, 1), "ns:http": (1, 2)}
    tools = {
        "ns:tooled": {"mcp:wiki": 3, "http:weather": 1, "mcp:files": 2, "function:now": 1},
        "ns:http": {"http:weather": 1},  # no MCP server: no report
        "ns:down": {"mcp:files": 0},  # the last good version's server offered none
    }
    assert status.reports(served, {}, tools) == (
        BotReport("ns:bad", None, None, "invalid config", 4),
        BotReport(
            "ns:down",
            1,
            7,
            "tool source 'mcp:files' is unavailable",
            9,
            reason="ToolUnavailable",
            tools=(("files", 0),),
        ),
        BotReport("ns:tooled", 2, 5, tools=(("files", 2), ("wiki", 3))),
    )
    status.ok("ns:down")
    status.ok("ns:bad")
    assert status.reports(served, {}, {"ns:http": {"http:weather": 1}}) == ()


def test_mcp_counts_are_the_mcp_sources_by_server_name() -> None:
    assert mcp_counts({"mcp:b": 1, "mcp:a": 0, "http:x": 4}) == (("a", 0), ("b", 1))
    assert mcp_counts({}) == ()


# -- a replica following a real store, building bots with a real MCP server ------------------

CTX = BotContext(conversation_id="c", client_id="t")


def spec(mcp_url: str | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"llm": {"provider": "echo", "model": "echo-1"}, "systemPrompt": "s"}
    if mcp_url is not None:
        config["tools"] = {"mcp": [{"name": "files", "url": mcp_url}]}
    return config


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def runtime(store: ReportingConfigStore) -> tuple[BotManager, StoreSync]:
    """A lazy replica whose bots' tools may reach 127.0.0.1, retrying tool builds quickly."""
    factory = BotFactory(env={}, egress=EgressPolicy.parse("127.0.0.1"))
    manager = BotManager(config_loader=StoreConfigLoader(store), factory=factory)
    settings = SyncSettings(replica_id="r1", heartbeat_interval=0.5, tool_retry_interval=0.1)
    return manager, StoreSync(store, manager, settings)


async def reported(
    store: ReportingConfigStore, sync: StoreSync, until: Callable[[tuple[BotReport, ...]], bool]
) -> tuple[BotReport, ...]:
    """The replica's bot reports once ``until(bots)`` holds, both in ``sync.report()`` and in
    the store (bounded wait)."""
    async with asyncio.timeout(15):
        while not until(sync.report().bots):
            await asyncio.sleep(0.02)
        while True:
            reports = await store.replica_reports(max_age_seconds=60)
            if reports and until(reports[0].bots):
                return reports[0].bots
            await asyncio.sleep(0.02)


async def test_an_unlistable_mcp_server_keeps_the_last_good_version_until_it_answers(
    store: ReportingConfigStore,
) -> None:
    port = closed_port()
    url = f"http://127.0.0.1:{port}/mcp"
    good = await store.put("ns:a", spec(), generation=1, uid="u")
    manager, sync = runtime(store)
    async with manager, sync:
        await sync.ready.wait()
        assert await (await manager.get_or_create("ns:a")).chat("hi", CTX) == "echo: hi"
        bad = await store.put("ns:a", spec(url), generation=2, uid="u")

        (down,) = await reported(store, sync, bool)
        assert (down.generation, down.revision, down.error_revision) == (1, good, bad)
        assert down.reason == "ToolUnavailable" and down.tools == ()
        assert down.error is not None and "mcp:files" in down.error
        # the last good version keeps serving (no tools), the retries fail alike meanwhile
        await asyncio.sleep(0.3)
        assert sync.report().bots == (down,)
        bot = await manager.get_or_create("ns:a")
        assert bot.version is not None and bot.version.revision == good
        assert await bot.chat("still?", CTX) == "echo: still?"

        with McpToolServer(port=port) as server:  # the server comes up where it was declared
            (up,) = await reported(store, sync, lambda bots: not any(b.error for b in bots))
            assert up == BotReport("ns:a", 2, bad, tools=(("files", 5),))
            served = await manager.get("ns:a")
            assert served is not None and served.version is not None
            assert served.version.revision == bad
            assert any(r.path == "/mcp" for r in server.requests)

        # its tools leave the report with them
        plain = await store.put("ns:a", spec(), generation=3, uid="u")
        assert await reported(store, sync, lambda bots: not bots) == ()
        version = manager.loaded_versions()["ns:a"]
        assert version is not None and (version.generation, version.revision) == (3, plain)


async def test_bots_declaring_mcp_servers_are_built_when_their_config_arrives(
    store: ReportingConfigStore,
) -> None:
    with McpToolServer() as server:
        listed = await store.put("ns:listed", spec(server.url), generation=1, uid="u")
        await store.put("ns:lazy", spec(), generation=1, uid="u")
        manager, sync = runtime(store)
        async with manager, sync:
            await sync.ready.wait()
            watched = await store.put("ns:watched", spec(server.url), generation=4, uid="u")
            bots = await reported(store, sync, lambda bots: len(bots) == 2)
            assert bots == (
                BotReport("ns:listed", 1, listed, tools=(("files", 5),)),
                BotReport("ns:watched", 4, watched, tools=(("files", 5),)),
            )
            # nobody chatted: the MCP bots were built from the listing and the watch, the
            # plain bot stays lazy
            assert set(manager.loaded_versions()) == {"ns:listed", "ns:watched"}
            assert manager.tool_counts()["ns:watched"] == {"mcp:files": 5}
