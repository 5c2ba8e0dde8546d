"""A tool header's Secret on the real kube-apiserver: the operator tracks it as it tracks the LLM
key's. Missing -> ``SecretMissing`` naming the header's field path and nothing stored; created
-> written and served, the runtime sending its value; changed -> the store entry re-written at a
new revision (same generation) and the runtime sending the new value, with no restart.

Same session ``stack`` as test_scenarios.py (one operator, one runtime, PostgreSQL store); the
HTTP tool server runs on 127.0.0.1, which the runtime's tool egress allows. The echo provider
calls the tool (``call NAME ARGS``), so no model server is needed.
"""

from __future__ import annotations

import textwrap
from typing import Any

from kubebots.runtime.testing.tool_servers import HttpToolServer
from tests.e2e.conftest import Stack, is_ready_for_generation, ready_reason, wait_until
from tests.e2e.test_scenarios import bot_yaml, chat_ok

HEADER_PATH = "spec.tools.http.0.headers.0.secretRef"


def tool_spec(url: str) -> str:
    return textwrap.dedent(
        f"""\
        llm: {{provider: echo, model: echo-1}}
        systemPrompt: use the tool
        tools:
          http:
            - name: weather
              url: {url}/weather/{{city}}
              parameters:
                type: object
                properties: {{city: {{type: string}}}}
              headers:
                - name: X-Api-Key
                  secretRef: {{name: tool-auth, key: token}}
        """
    )


def tool_secret_yaml(ns: str, value: str) -> str:
    return (
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: tool-auth\n  namespace: {ns}\n"
        f"type: Opaque\nstringData:\n  token: {value}\n"
    )


def stored(stack: Stack, bot_id: str) -> tuple[int, int, dict[str, Any]]:
    """The store entry's revision, generation and annotations."""
    rows = stack.sql(
        "SELECT revision, generation, annotations FROM {p}state WHERE bot_id = %s", bot_id
    )
    assert len(rows) == 1, rows
    revision, generation, annotations = rows[0]
    return int(revision), int(generation), dict(annotations or {})


def key_sent(stack: Stack, bot_id: str, web: HttpToolServer, value: str) -> bool:
    """Chat a tool call; whether the tool's last request carried ``value`` as its header."""
    chat_ok(stack, bot_id, 'call weather {"city": "Paris"}')
    return web.requests[-1].headers.get("x-api-key") == value


def test_a_tool_header_secret_is_waited_for_then_followed(stack: Stack) -> None:
    name, bot_id = "tool-keyed", f"{stack.ns}:tool-keyed"
    k1, k2 = "tool-e2e-first-0001", "tool-e2e-second-0002"
    with HttpToolServer() as web:
        stack.apply(bot_yaml(stack.ns, name, tool_spec(web.url)))
        bot = stack.wait_status(
            name,
            lambda b: ready_reason(b) == ("False", "SecretMissing"),
            "Ready=False reason SecretMissing",
        )
        conds = {c["type"]: c for c in bot["status"]["conditions"]}
        assert (conds["Synced"]["status"], conds["Synced"]["reason"]) == ("False", "SecretMissing")
        assert conds["Ready"]["message"] == (
            f"{HEADER_PATH}: Secret 'tool-auth' not found in namespace '{stack.ns}'"
        )
        assert stack.sql("SELECT bot_id FROM {p}state WHERE bot_id = %s", bot_id) == []

        # the Secret is created: written (its version recorded), served with its value
        stack.apply(tool_secret_yaml(stack.ns, k1))
        ready = stack.wait_ready(name)
        revision, generation, annotations = stored(stack, bot_id)
        assert ready["status"]["revision"] == revision and generation == 1
        version = stack.kubectl(
            "-n",
            stack.ns,
            "get",
            "secret",
            "tool-auth",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ).stdout
        assert annotations == {"secretVersion": version}
        assert key_sent(stack, bot_id, web, k1)
        assert stack.runtime is not None and stack.runtime.popen is not None
        pid = stack.runtime.popen.pid

        # it changes: a new revision of the same generation, the runtime sends the new value
        stack.apply(tool_secret_yaml(stack.ns, k2))
        wait_until(
            lambda: stored(stack, bot_id)[0] > revision,
            "the store entry to be re-written",
            30,
            0.2,
            stack.logs,
        )
        rewritten, generation, annotations = stored(stack, bot_id)
        assert generation == 1 and annotations["secretVersion"] != version
        wait_until(
            lambda: key_sent(stack, bot_id, web, k2),
            "the runtime to send the new header value",
            60,
            0.5,
            stack.logs,
        )
        assert stack.runtime.popen.pid == pid and stack.runtime.alive
        after = stack.wait_status(
            name,
            lambda b: is_ready_for_generation(b) and b["status"]["revision"] >= rewritten,
            "Ready=True at the new revision",
        )
        assert after["metadata"]["generation"] == 1

    # the values live only in the Secret: not in the Bot, the store or any log
    bot_text = stack.kubectl("-n", stack.ns, "get", "bot", name, "-o", "json").stdout
    store_text = str(
        stack.sql("SELECT config, annotations FROM {p}state WHERE bot_id = %s", bot_id)
    )
    logs = "".join(p.log.read_text(errors="replace") for p in stack.procs)
    for value in (k1, k2):
        assert value not in bot_text and value not in store_text and value not in logs
    stack.kubectl("-n", stack.ns, "delete", "bot", name, "--wait=true")
