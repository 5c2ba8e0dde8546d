"""The factory builds bots with their tools: sources listed, clients shared and released, errors
about the config named by field, an MCP server that cannot be listed -> ToolUnavailable."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from kubebots.runtime import BotFactory, create_bot
from kubebots.runtime.errors import ConfigurationError, ToolUnavailableError
from kubebots.runtime.llm.base import ToolCall
from kubebots.runtime.schema import parse_bot_config
from kubebots.runtime.secrets import MappingSecretResolver
from kubebots.runtime.testing.tool_servers import HttpToolServer, McpToolServer
from kubebots.runtime.tools import FunctionTool, ToolSpec

from .conftest import LOOPBACK

SECRET = "Bearer factory-s3cr3t"
SECRETS = MappingSecretResolver({("tools", "token"): SECRET})


def spec(mcp_url: str, http_url: str, **extra: Any) -> dict[str, Any]:
    auth = [{"name": "Authorization", "secretRef": {"name": "tools", "key": "token"}}]
    return {
        "llm": {"provider": "echo"},
        "tools": {
            "mcp": [{"name": "calc", "url": mcp_url, "headers": auth, "allowedTools": ["add"]}],
            "http": [
                {
                    "name": "weather",
                    "url": http_url + "/weather/{city}",
                    "headers": auth,
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                }
            ],
            **extra,
        },
    }


def factory(**kwargs: Any) -> BotFactory:
    return BotFactory(env={}, secrets=SECRETS, egress=LOOPBACK, **kwargs)


async def test_a_bot_gets_its_declared_tools(
    mcp_server: McpToolServer, http_server: HttpToolServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    built = factory()
    config = parse_bot_config(spec(mcp_server.url, http_server.url), bot_id="b")
    bot = await built.build("b", config)
    assert bot.tools is not None
    assert sorted(s.name for s in bot.tools.specs) == ["add", "weather"]
    assert bot.tools.counts() == {"mcp:calc": 1, "http:weather": 1}
    added = await bot.tools.run(ToolCall(id="c1", name="add", arguments='{"a": 1, "b": 2}'))
    assert added.content == "3"
    weather = await bot.tools.run(ToolCall(id="c2", name="weather", arguments='{"city": "Oslo"}'))
    assert '"city":"Oslo"' in weather.content
    assert all(r.headers["authorization"] == SECRET for r in mcp_server.requests)
    assert http_server.requests[0].headers["authorization"] == SECRET
    calls = built.tool_stats.snapshot().calls
    assert calls[("b", "add", "ok")] == 1 and calls[("b", "weather", "ok")] == 1
    await bot.close()
    assert len(built.tool_clients.mcp) == 0 and built.tool_clients.http_users == 0
    assert "s3cr3t" not in caplog.text


async def test_two_bots_share_the_endpoint_until_both_are_closed(
    mcp_server: McpToolServer, http_server: HttpToolServer
) -> None:
    built = factory()
    config = parse_bot_config(spec(mcp_server.url, http_server.url), bot_id="a")
    one = await built.build("a", config)
    two = await built.build("b", config)
    assert len(built.tool_clients.mcp) == 1 and built.tool_clients.http_users == 2
    await one.close()
    assert len(built.tool_clients.mcp) == 1
    assert two.tools is not None
    result = await two.tools.run(ToolCall(id="c", name="add", arguments='{"a": 2, "b": 2}'))
    assert result.content == "4"
    await two.close()
    assert len(built.tool_clients.mcp) == 0 and built.tool_clients.http_users == 0


async def test_an_unreachable_mcp_server_is_tool_unavailable_and_nothing_stays_open(
    http_server: HttpToolServer,
) -> None:
    with McpToolServer() as gone:
        url = gone.url
    built = factory()
    config = parse_bot_config(spec(url, http_server.url), bot_id="b")
    with pytest.raises(ToolUnavailableError) as caught:
        await built.build("b", config)
    assert caught.value.source == "mcp:calc" and caught.value.reason_code == "ToolUnavailable"
    assert "s3cr3t" not in caught.value.message
    assert built.open_stores == 0
    assert len(built.tool_clients.mcp) == 0 and built.tool_clients.http_users == 0


async def test_a_url_outside_the_egress_allow_list_is_a_configuration_error(
    mcp_server: McpToolServer, http_server: HttpToolServer
) -> None:
    built = BotFactory(env={}, secrets=SECRETS)  # the default: the cluster's names only
    config = parse_bot_config(spec(mcp_server.url, http_server.url), bot_id="b")
    with pytest.raises(ConfigurationError) as caught:
        await built.build("b", config)
    assert caught.value.fields == ["tools.mcp.0.url"]
    assert "'127.0.0.1'" in caught.value.message
    assert mcp_server.requests == [] and built.open_stores == 0


async def test_a_missing_secret_names_the_header_field(
    mcp_server: McpToolServer, http_server: HttpToolServer
) -> None:
    built = BotFactory(env={}, secrets=MappingSecretResolver({}), egress=LOOPBACK)
    config = parse_bot_config(spec(mcp_server.url, http_server.url), bot_id="b")
    with pytest.raises(ConfigurationError) as caught:
        await built.build("b", config)
    assert caught.value.fields == ["tools.mcp.0.headers.0.secretRef"]
    assert built.open_stores == 0 and len(built.tool_clients.mcp) == 0


async def test_a_bot_without_tools_has_none() -> None:
    bot = await factory().build("b", parse_bot_config({"llm": {"provider": "echo"}}, bot_id="b"))
    assert bot.tools is None
    await bot.close()


async def test_create_bot_takes_python_function_tools() -> None:
    def shout(text: str) -> str:
        return text.upper()

    tool = FunctionTool(ToolSpec(name="shout", description="Shout.", source="function"), shout)
    bot = await create_bot({"llm": {"provider": "echo"}}, bot_id="f", tools=[tool])
    assert bot.tools is not None and [s.name for s in bot.tools.specs] == ["shout"]
    result = await bot.tools.run(ToolCall(id="c", name="shout", arguments='{"text": "hi"}'))
    assert result.content == "HI"
    await bot.close()


async def test_extra_sources_per_bot_id_join_the_declared_ones(
    mcp_server: McpToolServer, http_server: HttpToolServer
) -> None:
    from kubebots.runtime.tools import FunctionSource

    tool = FunctionTool(ToolSpec(name="ping", source="function"), lambda: "pong")
    built = factory(tools={"b": [FunctionSource([tool])]})
    config = parse_bot_config(spec(mcp_server.url, http_server.url), bot_id="b")
    bot = await built.build("b", config)
    assert bot.tools is not None
    assert sorted(s.name for s in bot.tools.specs) == ["add", "ping", "weather"]
    other = await built.build("other", config)
    assert other.tools is not None and "ping" not in other.tools
    await bot.close()
    await other.close()
