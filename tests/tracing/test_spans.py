"""Issue 18's tracing: the spans of a chat turn over HTTP and of the operator's reconcile.

The runtime runs on real uvicorn (loopback) with its SQLite config store; the Bot's model is the
``openai`` provider on the fake upstream, which calls the tool a user message names (``call NAME
ARGS``), and its HTTP tools are served by the tests. Spans are collected with the SDK's
in-memory exporter, given to :mod:`kubebots.runtime.tracing` by the ``spans`` fixture.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import kopf
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from kubebots.operator.handlers import bot_event
from kubebots.operator.kube import FINALIZER
from kubebots.runtime.configstore import MemoryConfigStore
from kubebots.runtime.llm import ToolCall
from kubebots.runtime.testing import FakeOpenAIServer, ThreadedServer
from kubebots.runtime.testing.tool_servers import HttpToolServer
from kubebots.runtime.tools import Toolset

from ..api.app.conftest import put_bots, running_app
from ..operator.support import SPEC, FlakyStore, operator

BOT = "default:traced"
KEY = "key-l-0123456789"  # the client "limited" (60 requests per minute): the limiter checks
HEADERS = {"Authorization": f"Bearer {KEY}"}
CITY = "Zanzibar"  # in the user's message, the tool's arguments and result and the reply
MESSAGE = f'call weather {{"city": "{CITY}"}}'
SYSTEM = "answer with the weather tool"
REMOTE_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
REMOTE_SPAN = "00f067aa0ba902b7"
TIMEOUT = 60.0
LOG = logging.getLogger("test.tracing")


def bot_spec(fake: FakeOpenAIServer, web: HttpToolServer) -> dict[str, Any]:
    city = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    return {
        "llm": {"provider": "openai", "model": "fake-model", "baseUrl": fake.base_url},
        "systemPrompt": SYSTEM,
        "conversationStorage": {"backend": "sqlite", "path": "conversations.db"},
        "tools": {
            "http": [
                {
                    "name": "weather",
                    "description": "The weather in a city.",
                    "parameters": city,
                    "url": web.url + "/weather/{city}",
                },
                {"name": "broken", "description": "Always fails.", "url": web.url + "/error"},
            ]
        },
    }


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(scope="module")
def web() -> Iterator[HttpToolServer]:
    with HttpToolServer() as server:
        yield server


@pytest.fixture
def server(
    tmp_path: Path, fake_llm: FakeOpenAIServer, web: HttpToolServer
) -> Iterator[ThreadedServer]:
    url = f"sqlite:{tmp_path / 'store.db'}"
    put_bots(url, "kubebots_", {BOT: bot_spec(fake_llm, web)})
    with running_app(url, tool_egress="127.0.0.1", data_dir=tmp_path) as running:
        yield running


def route_span(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    """The server span ``name`` (it ends just after the response's last byte is sent)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        found = [s for s in spans.get_finished_spans() if s.name == name]
        if found:
            assert len(found) == 1, found
            return found[0]
        time.sleep(0.01)
    raise AssertionError(f"no span {name!r}: {[s.name for s in spans.get_finished_spans()]}")


def children(spans: InMemorySpanExporter, parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [
        s
        for s in spans.get_finished_spans()
        if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]


def named(found: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in found if s.name == name]


def assert_no_content(found: Sequence[ReadableSpan], *secrets: str) -> None:
    """No attribute of any span quotes a message, a tool's arguments or result, or a key."""
    for span in found:
        for key, value in (span.attributes or {}).items():
            values = value if isinstance(value, tuple) else (value,)
            for item in values:
                for secret in secrets:
                    assert secret not in str(item), (span.name, key, item)


def test_a_chat_turn_is_a_tree_of_spans_under_its_route(
    server: ThreadedServer, spans: InMemorySpanExporter, fake_llm: FakeOpenAIServer
) -> None:
    response = httpx.post(
        f"{server.url}/bots/{BOT}/chat",
        json={"conversation_id": "c1", "message": MESSAGE},
        headers={**HEADERS, "traceparent": f"00-{REMOTE_TRACE}-{REMOTE_SPAN}-01"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    assert CITY in response.json()["response"]  # the model read the tool's result

    route = route_span(spans, "POST /bots/{bot_id}/chat")
    assert route.kind == SpanKind.SERVER
    assert route.context is not None and route.parent is not None
    # a child of the caller's span, in the caller's trace (W3C traceparent)
    assert format(route.context.trace_id, "032x") == REMOTE_TRACE
    assert format(route.parent.span_id, "016x") == REMOTE_SPAN
    assert dict(route.attributes or {}) == {
        "http.request.method": "POST",
        "http.route": "/bots/{bot_id}/chat",
        "http.response.status_code": 200,
        "kubebots.request_id": response.headers["x-request-id"],
    }
    assert route.status.status_code == StatusCode.UNSET

    under = children(spans, route)
    names = sorted(s.name for s in under)
    assert names == sorted(
        [
            "kubebots.ratelimit.admit",
            "kubebots.bot.build",
            "recent conversation",
            "chat fake-model",  # the call that asks for the tool
            "execute_tool weather",
            "chat fake-model",  # the call that reads its result
            "append conversation",
        ]
    ), names
    trace = [s for s in spans.get_finished_spans() if s.context.trace_id == route.context.trace_id]
    assert len(trace) == len(under) + 1  # every span of the turn is the route's child
    ordered = sorted(under, key=lambda s: s.start_time or 0)
    assert [s.name for s in ordered][:3] == [
        "kubebots.ratelimit.admit",
        "kubebots.bot.build",
        "recent conversation",
    ]
    assert ordered[-1].name == "append conversation"

    [limiter] = named(under, "kubebots.ratelimit.admit")
    assert limiter.attributes == {
        "kubebots.ratelimit.limits": ("requests",),
        "kubebots.ratelimit.allowed": True,
    }
    [build] = named(under, "kubebots.bot.build")
    assert build.attributes is not None
    assert build.attributes["kubebots.bot.id"] == BOT
    assert build.attributes["gen_ai.system"] == "openai"
    assert build.attributes["kubebots.bot.generation"] == 1

    asked, answered = sorted(named(under, "chat fake-model"), key=lambda s: s.start_time or 0)
    for llm in (asked, answered):
        attributes = dict(llm.attributes or {})
        assert llm.kind == SpanKind.CLIENT
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.system"] == "openai"
        assert attributes["gen_ai.request.model"] == "fake-model"
        assert (
            attributes["kubebots.llm.endpoint"]
            == f"fake-model@{urlsplit(fake_llm.base_url).netloc}"
        )
        assert isinstance(attributes["gen_ai.usage.input_tokens"], int)
        assert attributes["gen_ai.usage.input_tokens"] > 0
        assert attributes["gen_ai.usage.output_tokens"] >= 0
    assert (asked.attributes or {})["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert (answered.attributes or {})["gen_ai.response.finish_reasons"] == ("stop",)

    [tool] = named(under, "execute_tool weather")
    assert tool.attributes == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "weather",
        "gen_ai.tool.call.id": "call_fake_0",
        "kubebots.bot.id": BOT,
        "kubebots.tool.outcome": "ok",
    }
    assert tool.status.status_code == StatusCode.UNSET

    for storage in named(under, "recent conversation") + named(under, "append conversation"):
        attributes = dict(storage.attributes or {})
        assert attributes["db.system"] == "sqlite"
        assert attributes["kubebots.bot.id"] == BOT
        assert storage.kind == SpanKind.CLIENT
    [append] = named(under, "append conversation")
    assert (append.attributes or {})[
        "kubebots.conversation.messages"
    ] == 4  # user, call, tool, reply

    assert_no_content(trace, CITY, SYSTEM, "call weather", KEY)


def test_a_streamed_turn_and_a_failing_tool_mark_their_spans(
    server: ThreadedServer, spans: InMemorySpanExporter
) -> None:
    with httpx.stream(
        "POST",
        f"{server.url}/bots/{BOT}/chat/stream",
        json={"conversation_id": "c2", "message": "call broken {}"},
        headers=HEADERS,
        timeout=TIMEOUT,
    ) as response:
        assert response.status_code == 200, response.read()
        body = response.read().decode()
    assert "event: tool_result" in body and "event: done" in body, body

    route = route_span(spans, "POST /bots/{bot_id}/chat/stream")
    under = children(spans, route)
    assert len(named(under, "chat fake-model")) == 2  # spans that end across the stream's yields
    [tool] = named(under, "execute_tool broken")
    assert (tool.attributes or {})["kubebots.tool.outcome"] == "error"
    assert tool.status.status_code == StatusCode.ERROR
    assert (tool.attributes or {})["error.type"] == "error"
    assert route.status.status_code == StatusCode.UNSET  # the turn answered: 200

    missing = httpx.post(
        f"{server.url}/bots/default:absent/chat",
        json={"conversation_id": "c3", "message": "hi"},
        headers=HEADERS,
        timeout=TIMEOUT,
    )
    assert missing.status_code == 404
    refused = route_span(spans, "POST /bots/{bot_id}/chat")
    assert (refused.attributes or {})["http.response.status_code"] == 404
    assert refused.status.status_code == StatusCode.UNSET  # a client's error is not the server's
    assert refused.parent is None  # no traceparent: a trace of its own
    assert_no_content(spans.get_finished_spans(), "call broken", SYSTEM, KEY)


def bot_meta(generation: int) -> dict[str, Any]:
    return {
        "namespace": "team-a",
        "name": "helper",
        "uid": "uid-7",
        "generation": generation,
        "resourceVersion": "1",
        "finalizers": [FINALIZER],
    }


async def reconcile_event(store: MemoryConfigStore, generation: int) -> kopf.Patch:
    m = operator(store)
    patch = kopf.Patch()
    await bot_event(
        type="MODIFIED",
        meta=bot_meta(generation),
        spec=SPEC,
        status={},
        patch=patch,
        memo=m.memo,
        logger=LOG,
    )
    return patch


async def test_the_operator_reconcile_is_a_span_naming_the_bot_and_generation(
    spans: InMemorySpanExporter,
) -> None:
    store = MemoryConfigStore()
    patch = await reconcile_event(store, generation=3)
    assert patch["status"]["observedGeneration"] == 3
    [span] = spans.get_finished_spans()
    assert span.name == "kubebots.operator.reconcile"
    assert span.parent is None
    assert span.attributes == {
        "k8s.namespace.name": "team-a",
        "kubebots.bot.name": "helper",
        "kubebots.bot.id": "team-a:helper",
        "kubebots.bot.generation": 3,
    }
    assert span.status.status_code == StatusCode.UNSET


async def test_a_reconcile_that_cannot_write_marks_its_span_failed(
    spans: InMemorySpanExporter,
) -> None:
    store = FlakyStore()
    store.down = True
    await reconcile_event(store, generation=1)
    [span] = spans.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "StoreError"
    assert span.status.description == "StoreError"  # the type only, never the message


async def test_a_call_of_a_tool_that_does_not_exist_does_not_repeat_its_name(
    spans: InMemorySpanExporter,
) -> None:
    toolset = Toolset([], bot_id="default:tools")
    result = await toolset.run(ToolCall("call_9", "please-leak-this", "{}"))
    assert result.is_error
    [span] = spans.get_finished_spans()
    assert span.name == "execute_tool"
    assert span.attributes == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.call.id": "call_9",
        "kubebots.bot.id": "default:tools",
        "kubebots.tool.outcome": "invalid",
        "error.type": "invalid",
    }
    assert span.status.status_code == StatusCode.ERROR
