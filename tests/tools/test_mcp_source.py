"""MCP tools from a real MCP server (the SDK's MCPServer over streamable HTTP), through the real
SDK client: listing, filtering, calls, errors, timeouts, caps, shared and restarted sessions."""

from __future__ import annotations

from typing import Any

import pytest

from kubebots.runtime.errors import ToolError, ToolTimeoutError
from kubebots.runtime.schema.tools import McpServerTool
from kubebots.runtime.testing.tool_servers import McpToolServer
from kubebots.runtime.tools.clients import ToolClients
from kubebots.runtime.tools.mcp_connection import McpConnection
from kubebots.runtime.tools.mcp_source import McpToolSource

ALL = ["add", "fail", "lookup", "slow", "write_note"]


def mcp_source(clients: ToolClients, url: str, **config: Any) -> McpToolSource:
    server = McpServerTool.model_validate({"name": "files", "url": url, **config})
    headers = config.pop("resolved_headers", {})
    connection = clients.mcp.acquire(url, headers)

    async def release() -> None:
        await clients.mcp.release(connection)

    return McpToolSource(server, connection, release=release)


async def test_lists_every_tool_with_its_schema(
    clients: ToolClients, mcp_server: McpToolServer
) -> None:
    source = mcp_source(clients, mcp_server.url)
    specs = {spec.name: spec for spec in await source.list_tools()}
    assert sorted(specs) == ALL
    add = specs["add"]
    assert add.description == "Add two integers."
    assert add.parameters["type"] == "object"
    assert set(add.parameters["properties"]) == {"a", "b"}
    assert add.source == "mcp:files" and not add.requires_approval and add.timeout == 30.0
    await source.close()


async def test_allowed_tools_prefix_and_approval(
    clients: ToolClients, mcp_server: McpToolServer
) -> None:
    source = mcp_source(
        clients,
        mcp_server.url,
        allowedTools=["add", "write_note"],
        toolPrefix="fs_",
        approvalRequiredTools=["write_note"],
        timeout=7,
    )
    specs = {spec.name: spec for spec in await source.list_tools()}
    assert sorted(specs) == ["fs_add", "fs_write_note"]
    assert specs["fs_write_note"].requires_approval and not specs["fs_add"].requires_approval
    assert specs["fs_add"].timeout == 7
    result = await source.call("fs_add", {"a": 2, "b": 40}, seconds=5)
    assert (result.content, result.is_error) == ("42", False)
    with pytest.raises(ToolError, match="unknown tool 'add'"):
        await source.call("add", {"a": 1, "b": 1}, seconds=5)  # only by its offered name
    every = mcp_source(clients, mcp_server.url, requiresApproval=True)
    assert all(spec.requires_approval for spec in await every.list_tools())


async def test_an_allowed_tool_the_server_lacks_is_named(
    clients: ToolClients, mcp_server: McpToolServer
) -> None:
    source = mcp_source(clients, mcp_server.url, allowedTools=["add", "delete_everything"])
    with pytest.raises(ToolError, match="no tool 'delete_everything'"):
        await source.list_tools()


async def test_calls_side_effects_errors_and_caps(
    clients: ToolClients, mcp_server: McpToolServer
) -> None:
    source = mcp_source(clients, mcp_server.url, maxResponseBytes=4)
    await source.list_tools()
    note = await source.call("write_note", {"text": "buy milk"}, seconds=5)
    assert note.content == "stor\n[cut at 4 bytes]"
    assert mcp_server.notes == ["buy milk"]
    failed = await source.call("fail", {}, seconds=5)
    assert failed.is_error and failed.content == "Erro\n[cut at 4 bytes]"
    full = mcp_source(clients, mcp_server.url)
    await full.list_tools()
    assert (await full.call("lookup", {"key": "answer"}, seconds=5)).content == "42"
    missing = await full.call("lookup", {"key": "nope"}, seconds=5)
    assert missing.is_error and "no such key: nope" in missing.content
    failed = await full.call("fail", {}, seconds=5)
    assert failed.is_error
    assert failed.content == "Error executing tool fail: the tool failed on purpose"
    bad = await full.call("add", {"a": "not a number"}, seconds=5)
    assert bad.is_error  # the server validates the arguments


async def test_a_slow_tool_times_out_and_the_session_keeps_working(
    clients: ToolClients, mcp_server: McpToolServer
) -> None:
    source = mcp_source(clients, mcp_server.url, timeout=0.5)
    await source.list_tools()
    with pytest.raises(ToolTimeoutError, match=r"within 0\.5 seconds"):
        await source.call("slow", {"seconds": 1}, seconds=10)
    with pytest.raises(ToolTimeoutError, match=r"within 0\.2 seconds"):
        await source.call("slow", {"seconds": 1}, seconds=0.2)
    assert (await source.call("add", {"a": 1, "b": 1}, seconds=5)).content == "2"
    assert source.connection.sessions_opened == 1


async def test_two_sources_of_one_endpoint_share_a_session_closed_by_the_last(
    clients: ToolClients, mcp_server: McpToolServer
) -> None:
    one = mcp_source(clients, mcp_server.url)
    two = mcp_source(clients, mcp_server.url, toolPrefix="b_")
    assert one.connection is two.connection and len(clients.mcp) == 1
    await one.list_tools()
    await two.list_tools()
    assert (await two.call("b_add", {"a": 1, "b": 2}, seconds=5)).content == "3"
    assert one.connection.sessions_opened == 1
    other = clients.mcp.acquire(mcp_server.url, {"Authorization": "Bearer other"})
    assert other is not one.connection  # other credentials: another session
    await clients.mcp.release(other)
    await one.close()
    await one.close()  # idempotent: gives its share back once
    assert len(clients.mcp) == 1
    assert (await two.call("b_add", {"a": 2, "b": 2}, seconds=5)).content == "4"
    await two.close()
    assert len(clients.mcp) == 0
    with pytest.raises(ToolError, match="closed"):
        await two.connection.list_tools(seconds=5)


async def test_a_restarted_server_gets_a_new_session(
    clients: ToolClients, mcp_server: McpToolServer
) -> None:
    source = mcp_source(clients, mcp_server.url)
    await source.list_tools()
    assert (await source.call("add", {"a": 1, "b": 1}, seconds=5)).content == "2"
    mcp_server.restart()
    assert (await source.call("add", {"a": 2, "b": 3}, seconds=5)).content == "5"
    assert mcp_server.requests  # the fresh server answered
    assert source.connection.sessions_opened in (1, 2)  # 2026-07-28 sessions outlive restarts


async def test_a_stopped_server_is_a_tool_error_then_recovers(
    clients: ToolClients, mcp_server: McpToolServer
) -> None:
    source = mcp_source(clients, mcp_server.url)
    await source.list_tools()
    mcp_server.stop()
    with pytest.raises(ToolError) as caught:
        await source.call("add", {"a": 1, "b": 1}, seconds=5)
    assert "127.0.0.1" in caught.value.message
    mcp_server.start()
    assert (await source.call("add", {"a": 1, "b": 2}, seconds=5)).content == "3"
    assert source.connection.sessions_opened == 3  # broken; one reconnect failed; one worked


async def test_an_unreachable_server_cannot_be_listed() -> None:
    with McpToolServer() as gone:
        url = gone.url
    connection = McpConnection(url, {})
    with pytest.raises(ToolError, match=r"cannot open a session \(ConnectError\)"):
        await connection.list_tools(seconds=5)
    await connection.close()


async def test_secret_headers_reach_the_server_and_never_the_logs(
    clients: ToolClients, mcp_server: McpToolServer, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    secret = "Bearer mcp-s3cr3t-value"
    connection = clients.mcp.acquire(mcp_server.url, {"Authorization": secret})
    server = McpServerTool.model_validate({"name": "files", "url": mcp_server.url})
    source = McpToolSource(server, connection)
    await source.list_tools()
    await source.call("add", {"a": 1, "b": 1}, seconds=5)
    assert mcp_server.requests and all(
        r.headers.get("authorization") == secret for r in mcp_server.requests
    )
    assert "s3cr3t" not in caplog.text
    await clients.mcp.release(connection)


async def test_parallel_calls_from_many_tasks_share_one_session(
    clients: ToolClients, mcp_server: McpToolServer
) -> None:
    import asyncio

    source = mcp_source(clients, mcp_server.url)
    await source.list_tools()
    results = await asyncio.gather(
        source.call("slow", {"seconds": 0.3}, seconds=5),
        *(source.call("add", {"a": n, "b": n}, seconds=5) for n in range(8)),
    )
    assert [r.content for r in results] == ["done", *(str(2 * n) for n in range(8))]
    assert source.connection.sessions_opened == 1


def test_result_text_joins_text_summarises_other_kinds_and_falls_back_to_structured() -> None:
    from mcp_types import CallToolResult, ImageContent, TextContent

    from kubebots.runtime.tools.mcp_source import result_text

    mixed = CallToolResult(
        content=[
            TextContent(text="first"),
            ImageContent(data="aGk=", mime_type="image/png"),
            TextContent(text="second"),
        ]
    )
    assert result_text(mixed) == "first\n[image]\nsecond"
    structured = CallToolResult(content=[], structured_content={"temperature": 21})
    assert result_text(structured) == '{"temperature": 21}'
    image_only = CallToolResult(content=[ImageContent(data="aGk=", mime_type="image/png")])
    assert result_text(image_only) == "[image]"
