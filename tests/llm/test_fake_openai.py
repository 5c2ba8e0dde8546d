"""The fake OpenAI server itself, spoken to with plain httpx: wire format, faults, lifecycle."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any

import httpx
import pytest

from kubebots.runtime.testing import FakeOpenAIServer

from .conftest import API_KEY

AUTH = {"authorization": f"Bearer {API_KEY}"}
BODY = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "sys prompt"},
        {"role": "user", "content": "one"},
        {"role": "user", "content": [{"type": "text", "text": "two parts"}]},
    ],
}


def sse_events(text: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, checking the exact framing."""
    assert text.endswith("\n\n")
    events = text.split("\n\n")[:-1]
    assert all(event.startswith("data: ") for event in events)
    return [event.removeprefix("data: ") for event in events]


async def test_chat_completion_wire_format(fake_openai: FakeOpenAIServer) -> None:
    async with httpx.AsyncClient(base_url=fake_openai.base_url) as client:
        response = await client.post("/chat/completions", json=BODY, headers=AUTH)
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["model"] == "m"
    assert data["choices"][0]["message"] == {
        "role": "assistant",
        "content": "[m] sys prompt | two parts",
    }
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"] == {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}


async def test_streamed_wire_format(fake_openai: FakeOpenAIServer) -> None:
    body = BODY | {"stream": True, "stream_options": {"include_usage": True}}
    async with httpx.AsyncClient(base_url=fake_openai.base_url) as client:
        response = await client.post("/chat/completions", json=body, headers=AUTH)
    assert response.headers["content-type"].startswith("text/event-stream")
    *payloads, done = sse_events(response.text)
    assert done == "[DONE]"
    chunks = [json.loads(payload) for payload in payloads]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]]
    assert "".join(deltas) == "[m] sys prompt | two parts"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] == 11


async def test_models_and_recorded_requests(fake_openai: FakeOpenAIServer) -> None:
    async with httpx.AsyncClient(base_url=fake_openai.base_url) as client:
        models = (await client.get("/models", headers=AUTH)).json()
        await client.post("/chat/completions", json=BODY)
    assert [model["id"] for model in models["data"]] == ["fake-model"]
    first, second = fake_openai.requests
    assert (first["method"], first["path"], first["body"]) == ("GET", "/v1/models", None)
    assert first["authorization"] == AUTH["authorization"]
    assert (second["path"], second["body"], second["authorization"]) == (
        "/v1/chat/completions",
        BODY,
        None,
    )
    fake_openai.reset()
    assert fake_openai.requests == []


async def test_missing_key_gets_a_401_echoing_what_was_presented(
    fake_openai: FakeOpenAIServer,
) -> None:
    async with httpx.AsyncClient(base_url=fake_openai.base_url) as client:
        response = await client.post(
            "/chat/completions", json=BODY, headers={"authorization": "Bearer wrong-key"}
        )
    assert response.status_code == 401
    assert "wrong-key" in response.json()["error"]["message"]


async def test_injected_faults_apply_in_order_and_run_out(fake_openai: FakeOpenAIServer) -> None:
    fake_openai.inject(429, times=2, retry_after=1.5)
    fake_openai.inject(500, message="boom")
    async with httpx.AsyncClient(base_url=fake_openai.base_url, headers=AUTH) as client:
        responses = [await client.post("/chat/completions", json=BODY) for _ in range(4)]
    assert [r.status_code for r in responses] == [429, 429, 500, 200]
    assert responses[0].headers["retry-after"] == "1.5"
    assert "retry-after" not in responses[2].headers
    assert responses[2].json()["error"]["message"] == "boom"


async def test_stream_only_faults_wait_for_a_streamed_request(
    fake_openai: FakeOpenAIServer,
) -> None:
    fake_openai.inject(error_after=1)
    async with httpx.AsyncClient(base_url=fake_openai.base_url, headers=AUTH) as client:
        plain = await client.post("/chat/completions", json=BODY)
        streamed = await client.post("/chat/completions", json=BODY | {"stream": True})
        again = await client.post("/chat/completions", json=BODY | {"stream": True})
    assert plain.status_code == 200
    *_, last = sse_events(streamed.text)
    assert json.loads(last)["error"]["message"] == "injected error mid-stream"
    assert sse_events(again.text)[-1] == "[DONE]"


@pytest.mark.parametrize(
    "kwargs", [{}, {"status": 200}, {"status": 429, "times": 0}, {"status": 600}]
)
def test_inject_rejects_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="inject"):
        FakeOpenAIServer().inject(**kwargs)


def test_stop_releases_the_port_and_the_thread() -> None:
    before = set(threading.enumerate())
    server = FakeOpenAIServer()
    with server:
        port = server.port
        assert server.base_url == f"http://127.0.0.1:{port}/v1"
        assert httpx.get(f"{server.base_url}/models").status_code == 200
        assert server.running
    assert not server.running
    assert set(threading.enumerate()) <= before
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0
        sock.bind(("127.0.0.1", port))
    server.stop()  # idempotent


def test_it_can_be_restarted_and_started_only_once() -> None:
    server = FakeOpenAIServer()
    with server, pytest.raises(RuntimeError, match="already running"):
        server.start()
    with server:
        assert httpx.get(f"{server.base_url}/models").status_code == 200


async def test_stop_cuts_a_hang_short() -> None:
    server = FakeOpenAIServer().start()
    server.inject(hang=30.0)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30.0) as client:
        request = asyncio.create_task(client.get("/models"))
        for _ in range(500):  # wait until the server holds the request
            if server.requests:
                break
            await asyncio.sleep(0.01)
        started = time.monotonic()
        await asyncio.to_thread(server.stop)
        assert time.monotonic() - started < 3.0
        await asyncio.wait([request], timeout=5.0)
    assert request.done()
    assert request.exception() is None  # the hang ended early and the reply went out
    assert not server.running


TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
CALL_BODY = {
    "model": "m",
    "messages": [{"role": "user", "content": 'call lookup {"query": "a longer query"}'}],
    "tools": TOOLS,
}


async def test_a_tool_call_reply_on_the_wire(fake_openai: FakeOpenAIServer) -> None:
    async with httpx.AsyncClient(base_url=fake_openai.base_url, headers=AUTH) as client:
        data = (await client.post("/chat/completions", json=CALL_BODY)).json()
    (choice,) = data["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_fake_0",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"query": "a longer query"}'},
            }
        ],
    }
    assert data["usage"]["completion_tokens"] == 5  # lookup {"query": "a longer query"}


async def test_a_streamed_tool_call_on_the_wire(fake_openai: FakeOpenAIServer) -> None:
    body = CALL_BODY | {"stream": True, "stream_options": {"include_usage": True}}
    async with httpx.AsyncClient(base_url=fake_openai.base_url, headers=AUTH) as client:
        response = await client.post("/chat/completions", json=body)
    *payloads, done = sse_events(response.text)
    assert done == "[DONE]"
    role, first, *pieces, finish, usage = [json.loads(p) for p in payloads]
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": None}
    assert first["choices"][0]["delta"] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_fake_0",
                "type": "function",
                "function": {"name": "lookup", "arguments": ""},
            }
        ]
    }
    arguments = [p["choices"][0]["delta"]["tool_calls"][0] for p in pieces]
    assert all(set(a) == {"index", "function"} and a["index"] == 0 for a in arguments)
    assert "".join(a["function"]["arguments"] for a in arguments) == '{"query": "a longer query"}'
    assert finish["choices"][0] == {
        "index": 0,
        "delta": {},
        "finish_reason": "tool_calls",
        "logprobs": None,
    }
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 5


async def test_tool_results_are_mentioned_in_the_reply(fake_openai: FakeOpenAIServer) -> None:
    call = {"id": "c9", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    body = CALL_BODY | {
        "messages": [
            *CALL_BODY["messages"],
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c9", "content": "found 3"},
        ]
    }
    async with httpx.AsyncClient(base_url=fake_openai.base_url, headers=AUTH) as client:
        data = (await client.post("/chat/completions", json=body)).json()
    assert data["choices"][0]["message"]["content"].endswith(" | tool lookup: found 3")
    assert data["choices"][0]["finish_reason"] == "stop"


async def test_scripted_replies_come_in_order_then_the_rules_again(
    fake_openai: FakeOpenAIServer,
) -> None:
    fake_openai.script("first")
    fake_openai.script(None, tool_calls=[("lookup", "{}")], finish_reason="stop")
    async with httpx.AsyncClient(base_url=fake_openai.base_url, headers=AUTH) as client:
        replies = [(await client.post("/chat/completions", json=BODY)).json() for _ in range(3)]
    choices = [reply["choices"][0] for reply in replies]
    assert (choices[0]["message"]["content"], choices[0]["finish_reason"]) == ("first", "stop")
    assert choices[1]["message"]["tool_calls"][0]["function"]["name"] == "lookup"
    assert choices[1]["finish_reason"] == "stop"
    assert choices[2]["message"]["content"] == "[m] sys prompt | two parts"
    fake_openai.script("forgotten")
    fake_openai.reset()
    assert fake_openai.take_script() is None


async def test_max_tokens_truncates_the_stream_too(fake_openai: FakeOpenAIServer) -> None:
    body = BODY | {"stream": True, "max_tokens": 2}
    async with httpx.AsyncClient(base_url=fake_openai.base_url, headers=AUTH) as client:
        response = await client.post("/chat/completions", json=body)
    chunks = [json.loads(p) for p in sse_events(response.text)[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "[m] sys "
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("extra", "called"),
    [
        ({"tool_choice": "required"}, "lookup"),  # the first tool, though not asked
        ({"tool_choice": {"type": "function", "function": {"name": "lookup"}}}, "lookup"),
        ({"tool_choice": {"type": "function", "function": {"name": "unknown"}}}, None),
        ({"tool_choice": "auto"}, None),
        ({"tool_choice": "none", "messages": CALL_BODY["messages"]}, None),
    ],
)
async def test_tool_choice(
    fake_openai: FakeOpenAIServer, extra: dict[str, Any], called: str | None
) -> None:
    body = BODY | {"tools": TOOLS} | extra
    async with httpx.AsyncClient(base_url=fake_openai.base_url, headers=AUTH) as client:
        message = (await client.post("/chat/completions", json=body)).json()["choices"][0]
    calls = message["message"].get("tool_calls") or []
    assert [c["function"]["name"] for c in calls] == ([called] if called else [])
    assert message["finish_reason"] == ("tool_calls" if called else "stop")
