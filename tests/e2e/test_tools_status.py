"""MCP servers on the real kube-apiserver: a Bot whose MCP server cannot be listed is
``Ready=False`` with the reason ``ToolUnavailable`` while its last good generation keeps serving;
once the server answers (the runtime builds the Bot again by itself) it is ``Ready=True`` and
``status.tools`` lists the server's tools.

Same session ``stack`` as test_scenarios.py (one operator, one runtime, PostgreSQL store); the
runtime's tool egress allows 127.0.0.1 (``KUBEBOTS_TOOL_EGRESS``), where the MCP server runs.
"""

from __future__ import annotations

import textwrap
from typing import Any

import httpx

from kubebots.runtime.testing.tool_servers import McpToolServer
from tests.e2e.conftest import Stack, free_port, is_ready_for_generation, ready_reason
from tests.e2e.test_scenarios import bot_yaml, chat_ok, echo_spec


def mcp_spec(url: str, prompt: str) -> str:
    return (
        textwrap.dedent(echo_spec(prompt))
        + f"tools:\n  mcp:\n    - name: files\n      url: {url}\n"
    )


def served_revision(stack: Stack, bot_id: str) -> int | None:
    """The store revision the runtime serves for the bot (None: not loaded)."""
    assert stack.runtime is not None
    resp = httpx.get(f"{stack.runtime.url}/bots/{bot_id}", timeout=10)
    assert resp.status_code == 200, f"{resp.status_code} {resp.text}"
    served = resp.json()["served_revision"]
    return int(served) if served is not None else None


def is_tool_unavailable(bot: dict[str, Any]) -> bool:
    status = bot.get("status") or {}
    return status.get("observedGeneration") == bot["metadata"]["generation"] and ready_reason(
        bot
    ) == ("False", "ToolUnavailable")


def ready_message(bot: dict[str, Any]) -> str:
    ready = [c for c in bot["status"]["conditions"] if c["type"] == "Ready"]
    return str(ready[0]["message"])


def test_an_unreachable_mcp_server_is_tool_unavailable_while_the_last_good_serves(
    stack: Stack,
) -> None:
    name, bot_id = "tooled", f"{stack.ns}:tooled"
    stack.apply(bot_yaml(stack.ns, name, echo_spec("first")))
    good = stack.wait_ready(name)
    good_revision = good["status"]["revision"]
    assert chat_ok(stack, bot_id, "hello") == "echo: hello"  # loads generation 1
    assert served_revision(stack, bot_id) == good_revision

    closed = free_port()  # nothing listens there
    stack.apply(bot_yaml(stack.ns, name, mcp_spec(f"http://127.0.0.1:{closed}/mcp", "second")))
    bot = stack.wait_status(name, is_tool_unavailable, "Ready=False ToolUnavailable")
    message = ready_message(bot)
    assert stack.runtime is not None
    assert message.startswith(f"replica {stack.runtime.replica_id}: "), message
    assert "mcp:files" in message, message
    assert bot["status"]["revision"] > good_revision  # the new generation is in the store
    assert "tools" not in bot["status"]
    # the last good generation keeps serving
    assert chat_ok(stack, bot_id, "still there?") == "echo: still there?"
    assert served_revision(stack, bot_id) == good_revision
    # and it stays so while the server is down (the runtime's retries fail alike)
    again = stack.wait_status(name, is_tool_unavailable, "still ToolUnavailable", timeout=5)
    assert not is_ready_for_generation(again)

    # the server comes up where the Bot says: the runtime's retry builds the new generation
    with McpToolServer(port=closed) as server:
        bot = stack.wait_status(name, is_ready_for_generation, "Ready once the server answers")
        assert bot["status"]["tools"] == {"mcp": [{"name": "files", "tools": 5, "replicas": 1}]}
        assert served_revision(stack, bot_id) == bot["status"]["revision"]
        assert chat_ok(stack, bot_id, "tools?") == "echo: tools?"
        assert any(r.path == "/mcp" for r in server.requests)

        # a Bot applied with a reachable server is Ready at once, its tools in the status
        stack.apply(bot_yaml(stack.ns, "lister", mcp_spec(server.url, "listed")))
        listed = stack.wait_ready("lister")
        assert listed["status"]["tools"] == {"mcp": [{"name": "files", "tools": 5, "replicas": 1}]}

        # the MCP server leaves the spec: status.tools goes with it
        stack.apply(bot_yaml(stack.ns, name, echo_spec("third")))
        plain = stack.wait_status(
            name,
            lambda b: is_ready_for_generation(b) and "tools" not in b["status"],
            "Ready without status.tools",
        )
        assert served_revision(stack, bot_id) in (None, plain["status"]["revision"])
    stack.kubectl("-n", stack.ns, "delete", "bot", name, "lister", "--wait=true")
