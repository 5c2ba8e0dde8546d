"""The ``openai`` Python SDK (sync and async) against ``kubebots serve``.

The SDK is ours too (a runtime dependency), so it runs in-process; every test checks what reached
the fake upstream behind ``default:gpt`` as well as what came back.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import openai
import pytest
from openai.types.chat import ChatCompletionAssistantMessageParam, ChatCompletionFunctionToolParam
from pydantic import BaseModel

from kubebots.runtime.testing import FakeOpenAIServer, ThreadedServer

from .conftest import KEY, MODEL
from .support import (
    CALL,
    SYSTEM,
    TOOL_REPLY,
    TOOL_RESULT,
    UNKNOWN_MODEL,
    WEATHER_TOOL,
    assert_tool_request,
    assert_tool_round_trip,
    assert_weather_call,
    reply,
    sent,
    words,
)

TIMEOUT = 60.0
TOOLS = cast(list[ChatCompletionFunctionToolParam], [WEATHER_TOOL])


@pytest.fixture
def client(compat_server: ThreadedServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=compat_server.url + "/v1", api_key=KEY, timeout=TIMEOUT, max_retries=0
    ) as sdk:
        yield sdk


@pytest.fixture
async def aclient(compat_server: ThreadedServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=compat_server.url + "/v1", api_key=KEY, timeout=TIMEOUT, max_retries=0
    ) as sdk:
        yield sdk


# -- plain chat ---------------------------------------------------------------------------------


def test_sync_chat(client: openai.OpenAI, upstream: FakeOpenAIServer) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "the client's own instructions"},
            {"role": "user", "content": "hello from python"},
        ],
    )
    body = sent(upstream)
    assert body["messages"] == [
        SYSTEM,
        {"role": "system", "content": "the client's own instructions"},
        {"role": "user", "content": "hello from python"},
    ]
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    choice = completion.choices[0]
    assert choice.message.content == reply("hello from python")
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == words(reply("hello from python"))


async def test_async_chat(aclient: openai.AsyncOpenAI, upstream: FakeOpenAIServer) -> None:
    completion = await aclient.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hello async"}]
    )
    assert sent(upstream)["messages"] == [SYSTEM, {"role": "user", "content": "hello async"}]
    assert completion.choices[0].message.content == reply("hello async")
    assert completion.choices[0].finish_reason == "stop"


def test_sync_stream(client: openai.OpenAI, upstream: FakeOpenAIServer) -> None:
    with client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "stream to python"}],
        stream=True,
        stream_options={"include_usage": True},
    ) as stream:
        chunks = list(stream)
    body = sent(upstream)
    assert body["stream"] is True
    assert body["messages"] == [SYSTEM, {"role": "user", "content": "stream to python"}]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply("stream to python")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == words(text)


async def test_async_stream(aclient: openai.AsyncOpenAI, upstream: FakeOpenAIServer) -> None:
    stream = await aclient.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "async stream"}], stream=True
    )
    text = ""
    async with stream:
        async for chunk in stream:
            text += "".join(choice.delta.content or "" for choice in chunk.choices)
    assert text == reply("async stream")
    assert sent(upstream)["stream"] is True


def test_settings_reach_the_upstream(client: openai.OpenAI, upstream: FakeOpenAIServer) -> None:
    settings: dict[str, Any] = {
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 50,
        "seed": 7,
        "stop": ["END"],
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
    }
    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "settings"}], **settings
    )
    body = sent(upstream)
    assert {name: body.get(name) for name in settings} == settings
    assert completion.choices[0].message.content == reply("settings")


def test_max_tokens_cuts_the_reply(client: openai.OpenAI, upstream: FakeOpenAIServer) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "a reply longer than three words"}],
        max_completion_tokens=3,
    )
    assert sent(upstream)["max_completion_tokens"] == 3
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert words(choice.message.content or "") == 3


# -- tools ----------------------------------------------------------------------------------------


def test_sync_tool_call(client: openai.OpenAI, upstream: FakeOpenAIServer) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": CALL}],
        tools=TOOLS,
        tool_choice="auto",
    )
    assert_tool_request(sent(upstream), tool_choice="auto")
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0].type == "function"
    assert_weather_call(calls[0].function.name, calls[0].function.arguments, calls[0].id)


async def test_async_streamed_tool_call(
    aclient: openai.AsyncOpenAI, upstream: FakeOpenAIServer
) -> None:
    # The SDK's own accumulator assembles the streamed tool-call deltas.
    async with aclient.chat.completions.stream(
        model=MODEL,
        messages=[{"role": "user", "content": CALL}],
        tools=TOOLS,
    ) as stream:
        final = await stream.get_final_completion()
    body = sent(upstream)
    assert body["stream"] is True
    assert_tool_request(body)
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert len(calls) == 1
    assert_weather_call(calls[0].function.name, calls[0].function.arguments, calls[0].id)


def test_tool_result_round_trip(client: openai.OpenAI, upstream: FakeOpenAIServer) -> None:
    first = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": CALL}],
        tools=TOOLS,
    )
    call = (first.choices[0].message.tool_calls or [])[0]
    upstream.reset()
    second = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": CALL},
            cast(
                ChatCompletionAssistantMessageParam,
                first.choices[0].message.model_dump(exclude_none=True),
            ),
            {"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT},
        ],
        tools=TOOLS,
    )
    assert_tool_round_trip(sent(upstream), call.id)
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == TOOL_REPLY


# -- structured output ----------------------------------------------------------------------------


class Weather(BaseModel):
    city: str
    temperature_c: float
    sunny: bool


def test_json_schema_response_format(client: openai.OpenAI, upstream: FakeOpenAIServer) -> None:
    response_format: Any = {
        "type": "json_schema",
        "json_schema": {"name": "weather", "schema": Weather.model_json_schema(), "strict": True},
    }
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "the weather in Paris"}],
        response_format=response_format,
    )
    assert sent(upstream)["response_format"] == response_format
    report = Weather.model_validate_json(completion.choices[0].message.content or "")
    assert report == Weather(city="fake", temperature_c=0, sunny=True)  # the fake's samples


def test_parse_helper(client: openai.OpenAI, upstream: FakeOpenAIServer) -> None:
    parsed = client.chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": "the weather in Paris"}],
        response_format=Weather,
    )
    body = sent(upstream)
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["name"] == "Weather"
    assert body["response_format"]["json_schema"]["strict"] is True
    assert parsed.choices[0].message.parsed == Weather(city="fake", temperature_c=0, sunny=True)


def test_json_object_response_format(client: openai.OpenAI, upstream: FakeOpenAIServer) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "answer in JSON"}],
        response_format={"type": "json_object"},
    )
    assert sent(upstream)["response_format"] == {"type": "json_object"}
    assert json.loads(completion.choices[0].message.content or "") == {
        "reply": reply("answer in JSON")
    }


# -- models ---------------------------------------------------------------------------------------


def test_models_retrieve(client: openai.OpenAI, upstream: FakeOpenAIServer) -> None:
    found = client.models.retrieve(MODEL)
    assert (found.id, found.object, found.owned_by) == (MODEL, "model", "kubebots")
    assert MODEL in [m.id for m in client.models.list().data]
    assert upstream.requests == []  # the models come from the bots, not the upstream
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve(UNKNOWN_MODEL)
    assert_openai_error(caught.value, 404)
    assert UNKNOWN_MODEL in caught.value.message


# -- errors: the SDK's classes carry the server's message -----------------------------------------


def assert_openai_error(error: openai.APIStatusError, status: int) -> dict[str, Any]:
    """``error`` came from an OpenAI-shaped body: its message is the server's."""
    assert error.status_code == status
    body = error.response.json()
    assert set(body) == {"error"}, body
    details: dict[str, Any] = body["error"]
    assert {"message", "type", "param", "code"} <= set(details)
    assert isinstance(details["message"], str) and details["message"]
    assert error.message == f"Error code: {status} - {details['message']}"
    assert error.body == details
    return details


@pytest.mark.parametrize("stream", [False, True])
def test_unknown_model_is_not_found(
    client: openai.OpenAI, upstream: FakeOpenAIServer, stream: bool
) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(
            model=UNKNOWN_MODEL, messages=[{"role": "user", "content": "hi"}], stream=stream
        )
    details = assert_openai_error(caught.value, 404)
    assert UNKNOWN_MODEL in details["message"]
    assert caught.value.code == "model_not_found"
    assert upstream.requests == []


async def test_async_bad_request_names_the_param(
    aclient: openai.AsyncOpenAI, upstream: FakeOpenAIServer
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await aclient.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], temperature=5
        )
    details = assert_openai_error(caught.value, 400)
    assert caught.value.param == "temperature"
    assert details["type"] == "invalid_request_error"
    assert upstream.requests == []


def test_wrong_key_is_an_authentication_error(
    compat_server: ThreadedServer, upstream: FakeOpenAIServer
) -> None:
    with (
        openai.OpenAI(
            base_url=compat_server.url + "/v1",
            api_key="not-a-key-at-all",
            timeout=TIMEOUT,
            max_retries=0,
        ) as wrong,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        wrong.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    details = assert_openai_error(caught.value, 401)
    assert "not-a-key-at-all" not in json.dumps(details)
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("upstream_status", "error_class", "status"),
    [
        (429, openai.RateLimitError, 429),
        (503, openai.InternalServerError, 502),
    ],
)
def test_upstream_errors_map_to_the_sdks_classes(
    client: openai.OpenAI,
    upstream: FakeOpenAIServer,
    upstream_status: int,
    error_class: type[openai.APIStatusError],
    status: int,
) -> None:
    # the bot's provider tries 3 times (maxRetries defaults to 2): every try fails
    upstream.inject(
        upstream_status, times=3, message=f"upstream secret detail on port {upstream.port}"
    )
    with pytest.raises(error_class) as caught:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    details = assert_openai_error(caught.value, status)
    assert "secret" not in details["message"]
    assert str(upstream.port) not in json.dumps(details)
    if status == 429:
        assert int(caught.value.response.headers["retry-after"]) >= 1
    assert len(upstream.requests) == 3
