"""Issue 17's acceptance over HTTP: a Bot applied through the store calls a real MCP server
(the SDK's server, on loopback) and an HTTP tool served by the tests, through the chat route,
its SSE stream and ``/v1``; the model is the ``openai`` provider on the fake upstream, which
calls the tools a user message names (``call NAME ARGS``, one per line: a parallel call) and
quotes the results it is sent (``... | tool NAME: RESULT``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from kubebots.runtime.testing import FakeOpenAIServer, ThreadedServer
from kubebots.runtime.testing.tool_servers import HttpToolServer, McpToolServer

from .conftest import HEADERS_A, put_bots, running_app
from .helpers import TIMEOUT

BOT = "default:tools"
SECRET = "tool-secret-value-7d41"  # the HTTP tool's key, from a mounted Secret
BROKEN = "default:broken"  # its MCP server is not there
CLOSED = "http://127.0.0.1:9/mcp"  # the discard port: nothing listens on loopback


def tools_spec(fake: FakeOpenAIServer, mcp: McpToolServer, web: HttpToolServer) -> dict[str, Any]:
    return {
        "llm": {"provider": "openai", "model": "fake-model", "baseUrl": fake.base_url},
        "systemPrompt": "use tools",
        "tools": {
            "maxToolSteps": 4,
            "mcp": [
                {
                    "name": "calc",
                    "url": mcp.url,
                    "allowedTools": ["add", "slow", "fail", "write_note"],
                    "approvalRequiredTools": ["write_note"],
                    "timeout": 3,
                }
            ],
            "http": [
                {
                    "name": "weather",
                    "description": "The weather in a city.",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                    "url": web.url + "/weather/{city}",
                    "headers": [{"name": "X-Api-Key", "secretRef": {"name": "tools", "key": "k"}}],
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def mcp() -> Iterator[McpToolServer]:
    with McpToolServer() as server:
        yield server


@pytest.fixture(scope="module")
def web() -> Iterator[HttpToolServer]:
    with HttpToolServer() as server:
        yield server


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:{tmp_path_factory.mktemp('tools') / 'store.db'}"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    store_url: str,
    fake_llm: FakeOpenAIServer,
    mcp: McpToolServer,
    web: HttpToolServer,
) -> Iterator[ThreadedServer]:
    secrets = tmp_path_factory.mktemp("secrets")
    (secrets / "tools").mkdir()
    (secrets / "tools" / "k").write_text(SECRET)
    broken = {"llm": {"provider": "echo"}, "tools": {"mcp": [{"name": "gone", "url": CLOSED}]}}
    put_bots(store_url, "kubebots_", {BOT: tools_spec(fake_llm, mcp, web), BROKEN: broken})
    with running_app(
        store_url,
        tool_egress="127.0.0.1",
        secrets="directory",
        secrets_dir=secrets,
        tool_retry_interval=0.5,  # a listing slowed down by a loaded machine is retried soon
    ) as running:
        yield running


def chat(server: ThreadedServer, conversation: str, **body: Any) -> dict[str, Any]:
    response = httpx.post(
        f"{server.url}/bots/{BOT}/chat",
        json={"conversation_id": conversation, **body},
        headers=HEADERS_A,
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def events(server: ThreadedServer, conversation: str, **body: Any) -> list[tuple[str, Any]]:
    """The SSE events of a streamed turn, as (event, data) pairs."""
    out: list[tuple[str, Any]] = []
    with httpx.stream(
        "POST",
        f"{server.url}/bots/{BOT}/chat/stream",
        json={"conversation_id": conversation, **body},
        headers=HEADERS_A,
        timeout=TIMEOUT,
    ) as response:
        assert response.status_code == 200, response.read()
        event = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                out.append((str(event), json.loads(line.removeprefix("data: "))))
    return out


def history(server: ThreadedServer, conversation: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.url}/bots/{BOT}/conversations/{conversation}", headers=HEADERS_A)
    assert response.status_code == 200, response.text
    return list(response.json()["messages"])


def test_a_tool_call_runs_on_the_mcp_server_and_the_model_reads_the_result(
    server: ThreadedServer,
) -> None:
    reply = chat(server, "one", message='call add {"a": 2, "b": 3}')
    assert reply["status"] == "completed"
    [run] = reply["tool_calls"]
    assert (run["name"], run["content"], run["is_error"]) == ("add", "5", False)
    assert json.loads(run["arguments"]) == {"a": 2, "b": 3}
    assert reply["response"].endswith("| tool add: 5")
    assert reply["usage"]["total_tokens"] > 0
    stored = history(server, "one")
    assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert stored[1]["tool_calls"][0]["id"] == run["id"] == stored[2]["tool_call_id"]
    assert stored[2]["content"] == "5"
    assert stored[3]["content"] == reply["response"]


def test_parallel_calls_run_together_and_the_http_tool_gets_its_secret_header(
    server: ThreadedServer, web: HttpToolServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reply = chat(server, "two", message='call add {"a": 1, "b": 1}\ncall weather {"city": "Oslo"}')
    runs = {run["name"]: run for run in reply["tool_calls"]}
    assert set(runs) == {"add", "weather"}
    assert runs["add"]["content"] == "2"
    assert json.loads(runs["weather"]["content"])["city"] == "Oslo"
    assert "tool add: 2" in reply["response"] and "tool weather:" in reply["response"]
    [request] = [r for r in web.requests if r.path == "/weather/Oslo"]
    assert request.headers["x-api-key"] == SECRET
    stored = history(server, "two")
    assert [m["role"] for m in stored] == ["user", "assistant", "tool", "tool", "assistant"]
    assert len(stored[1]["tool_calls"]) == 2
    assert SECRET not in caplog.text
    assert all(SECRET not in json.dumps(m) for m in stored)


def test_a_slow_tool_and_a_failing_tool_are_tool_errors_the_model_sees_not_500s(
    server: ThreadedServer,
) -> None:
    started = time.monotonic()
    reply = chat(server, "three", message='call slow {"seconds": 10}')
    assert time.monotonic() - started < 9  # the call's timeout is 3 s
    [run] = reply["tool_calls"]
    assert run["is_error"] and "did not answer within" in run["content"]
    assert "tool slow: error" in reply["response"]
    reply = chat(server, "three", message="call fail")
    [run] = reply["tool_calls"]
    assert run["is_error"] and "failed on purpose" in run["content"]


def test_approval_accepted_runs_the_call_and_rejected_does_not(
    server: ThreadedServer, mcp: McpToolServer
) -> None:
    before = list(mcp.notes)
    reply = chat(server, "four", message='call write_note {"text": "ship it"}')
    assert reply["status"] == "awaiting_approval"
    [pending] = reply["pending_approvals"]
    assert pending["name"] == "write_note"
    assert json.loads(pending["arguments"]) == {"text": "ship it"}
    assert mcp.notes == before  # nothing ran yet
    reply = chat(server, "four", approvals=[{"id": pending["id"], "approved": True}])
    assert reply["status"] == "completed"
    [run] = reply["tool_calls"]
    assert (run["id"], run["is_error"]) == (pending["id"], False)
    assert mcp.notes == [*before, "ship it"]

    reply = chat(server, "four", message='call write_note {"text": "do not"}')
    [pending] = reply["pending_approvals"]
    reply = chat(server, "four", approvals=[{"id": pending["id"], "approved": False}])
    [run] = reply["tool_calls"]
    assert run["is_error"] and "rejected" in run["content"]
    assert mcp.notes == [*before, "ship it"]
    roles = [m["role"] for m in history(server, "four")]
    assert roles == ["user", "assistant", "tool", "assistant"] * 2


def test_approvals_that_do_not_match_the_pending_calls_are_refused(
    server: ThreadedServer,
) -> None:
    response = httpx.post(
        f"{server.url}/bots/{BOT}/chat",
        json={"conversation_id": "five", "approvals": [{"id": "nope", "approved": True}]},
        headers=HEADERS_A,
        timeout=TIMEOUT,
    )
    assert response.status_code in (400, 409, 422), response.text
    assert response.json()["error"]


def test_the_stream_emits_tool_events_between_text_and_waits_for_approval(
    server: ThreadedServer, mcp: McpToolServer
) -> None:
    got = events(server, "six", message='call add {"a": 4, "b": 5}')
    kinds = [kind for kind, _ in got]
    assert kinds[:2] == ["tool_call", "tool_result"]
    assert kinds[-1] == "done" and got[-1][1]["status"] == "completed"
    assert set(kinds[2:-1]) == {"delta"}
    assert got[1][1]["content"] == "9" and got[0][1]["id"] == got[1][1]["id"]
    assert "".join(data["delta"] for kind, data in got if kind == "delta").endswith("tool add: 9")

    got = events(server, "six", message='call write_note {"text": "streamed"}')
    kinds = [kind for kind, _ in got]
    assert kinds == ["approval_required", "done"]
    assert got[-1][1]["status"] == "awaiting_approval"
    [call] = got[0][1]["calls"]
    got = events(server, "six", approvals=[{"id": call["id"], "approved": True}])
    assert [kind for kind, _ in got[:2]] == ["tool_call", "tool_result"]  # it runs now
    assert got[-1][1]["status"] == "completed"
    assert "streamed" in mcp.notes


def test_v1_runs_server_tools_without_exposing_them(server: ThreadedServer) -> None:
    with openai.OpenAI(
        base_url=server.url + "/v1", api_key="key-a-0123456789", timeout=TIMEOUT, max_retries=0
    ) as sdk:
        reply = sdk.chat.completions.create(
            model=BOT, messages=[{"role": "user", "content": 'call add {"a": 20, "b": 22}'}]
        )
        choice = reply.choices[0]
        assert choice.finish_reason == "stop" and not choice.message.tool_calls
        assert (choice.message.content or "").endswith("tool add: 42")
        chunks = list(
            sdk.chat.completions.create(
                model=BOT,
                messages=[{"role": "user", "content": 'call add {"a": 1, "b": 2}'}],
                stream=True,
            )
        )
    assert not [c for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.endswith("tool add: 3")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_tool_metrics_count_calls_by_outcome(server: ThreadedServer) -> None:
    chat(server, "seven", message='call add {"a": 1, "b": 1}')
    text = httpx.get(f"{server.url}/metrics").text
    assert f'kubebots_tool_calls_total{{bot="{BOT}",outcome="ok",tool="add"}}' in text
    assert f'kubebots_tool_call_duration_seconds_count{{bot="{BOT}",tool="add"}}' in text


def test_a_reload_that_adds_a_tool_serves_it_next_turn_and_keeps_a_stream_in_flight(
    server: ThreadedServer,
    store_url: str,
    fake_llm: FakeOpenAIServer,
    mcp: McpToolServer,
    web: HttpToolServer,
) -> None:
    reply = chat(server, "eight", message='call post_note {"text": "x"}')
    assert reply["tool_calls"] == []  # not a tool yet: the model answers text
    spec = tools_spec(fake_llm, mcp, web)
    spec["tools"]["http"].append({"name": "post_note", "method": "POST", "url": web.url + "/notes"})
    with httpx.stream(
        "POST",
        f"{server.url}/bots/{BOT}/chat/stream",
        json={"conversation_id": "nine", "message": 'call slow {"seconds": 1}'},
        headers=HEADERS_A,
        timeout=TIMEOUT,
    ) as in_flight:
        put_bots(store_url, "kubebots_", {BOT: spec})  # while the slow tool runs
        lines = list(in_flight.iter_lines())
    assert "event: done" in lines and "event: error" not in lines
    deadline = time.monotonic() + 30
    while True:
        reply = chat(server, "eight", message='call post_note {"text": "added"}')
        if reply["tool_calls"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    [run] = reply["tool_calls"]
    assert (run["name"], run["is_error"]) == ("post_note", False)
    assert {"text": "added"} in web.notes


def test_an_unreachable_mcp_server_is_a_503_naming_the_server(server: ThreadedServer) -> None:
    response = httpx.post(
        f"{server.url}/bots/{BROKEN}/chat",
        json={"conversation_id": "c", "message": "hi"},
        headers=HEADERS_A,
        timeout=TIMEOUT,
    )
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "BotCreationError"
    assert "mcp:gone" in body["message"] and "unavailable" in body["message"]
