"""``/v1/chat/completions`` request settings: validated by OpenAI's rules, bounded by the Bot,
forwarded to the upstream (the fake records what it received), refused with 400 naming ``param``.

The official SDK (sync and async) is the client; ``default:gpt`` is an ``openai`` bot on the
fake upstream, ``default:bounded`` one whose Bot allows only ``temperature`` and ``max_tokens``
up to its ``maxTokens`` of 50.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from kubebots.runtime.testing import FakeOpenAIServer, ThreadedServer

from .conftest import HEADERS_A, default_bots, put_bots, running_app
from .helpers import TIMEOUT
from .v1_support import WEATHER_TOOL, assert_openai_error, upstream_body

KEY_A = "key-a-0123456789"
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
#: Every forwardable setting, as a client sends it (and the upstream must receive it).
SETTINGS: dict[str, Any] = {
    "temperature": 0.3,
    "top_p": 0.9,
    "max_tokens": 40,
    "stop": ["\n\n", "END"],
    "seed": 42,
    "presence_penalty": 0.5,
    "frequency_penalty": -0.5,
    "user": "end-user-1",
    "tools": [WEATHER_TOOL],
    "tool_choice": "auto",
    "parallel_tool_calls": False,
}
JSON_SCHEMA: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "answer",
        "schema": {
            "type": "object",
            "properties": {"answer": {"type": "string"}, "score": {"type": "integer"}},
            "required": ["answer", "score"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeOpenAIServer
) -> Iterator[ThreadedServer]:
    url = f"sqlite:{tmp_path_factory.mktemp('v1settings') / 'store.db'}"
    bots = default_bots(fake_llm)
    bots["default:bounded"] = {
        "llm": {
            "provider": "openai",
            "model": "bounded-model",
            "baseUrl": fake_llm.base_url,
            "temperature": 0.1,
            "maxTokens": 50,
            "allowRequestOverrides": ["temperature", "max_tokens"],
        },
        "systemPrompt": "bounded",
    }
    put_bots(url, "kubebots_", bots)
    with running_app(url) as running:
        yield running


@pytest.fixture
def client(server: ThreadedServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=server.url + "/v1", api_key=KEY_A, timeout=TIMEOUT, max_retries=0
    ) as sdk:
        yield sdk


@pytest.fixture
async def aclient(server: ThreadedServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=server.url + "/v1", api_key=KEY_A, timeout=TIMEOUT, max_retries=0
    ) as sdk:
        yield sdk


def sent_settings(fake: FakeOpenAIServer) -> dict[str, Any]:
    body = upstream_body(fake)
    return {k: body[k] for k in (*SETTINGS, "response_format") if k in body}


# -- settings reach the upstream ---------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_every_setting_reaches_the_upstream(
    client: openai.OpenAI, fake_llm: FakeOpenAIServer, stream: bool
) -> None:
    if stream:
        with client.chat.completions.create(
            model="default:gpt", messages=USER, stream=True, **SETTINGS
        ) as chunks:
            assert list(chunks)
    else:
        completion = client.chat.completions.create(model="default:gpt", messages=USER, **SETTINGS)
        assert completion.choices[0].message.content
    assert sent_settings(fake_llm) == SETTINGS
    assert upstream_body(fake_llm)["model"] == "fake-model"


def test_max_completion_tokens_and_json_schema_reach_the_upstream(
    client: openai.OpenAI, fake_llm: FakeOpenAIServer
) -> None:
    completion = client.chat.completions.create(
        model="default:gpt",
        messages=USER,
        max_completion_tokens=30,
        response_format=JSON_SCHEMA,  # type: ignore[arg-type]
    )
    body = upstream_body(fake_llm)
    assert body["max_completion_tokens"] == 30
    assert body["response_format"] == JSON_SCHEMA
    content = completion.choices[0].message.content
    assert content is not None and content.startswith("{")


def test_no_settings_send_none(client: openai.OpenAI, fake_llm: FakeOpenAIServer) -> None:
    client.chat.completions.create(model="default:gpt", messages=USER)
    assert sent_settings(fake_llm) == {}


async def test_async_client_settings_reach_the_upstream(
    aclient: openai.AsyncOpenAI, fake_llm: FakeOpenAIServer
) -> None:
    completion = await aclient.chat.completions.create(
        model="default:gpt", messages=USER, temperature=1.5, seed=7, stop="STOP"
    )
    assert completion.choices[0].finish_reason == "stop"
    assert sent_settings(fake_llm) == {"temperature": 1.5, "seed": 7, "stop": "STOP"}
    stream = await aclient.chat.completions.create(
        model="default:gpt", messages=USER, top_p=0.5, stream=True
    )
    async with stream:
        assert [chunk async for chunk in stream]
    assert sent_settings(fake_llm) == {"top_p": 0.5}


def test_max_tokens_truncates_with_finish_reason_length(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="default:gpt",
        messages=[{"role": "user", "content": "one two three four five six"}],
        max_tokens=2,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.content is not None and len(choice.message.content.split()) == 2
    with client.chat.completions.create(
        model="default:gpt",
        messages=[{"role": "user", "content": "one two three four five six"}],
        max_tokens=2,
        stream=True,
    ) as stream:
        finishes = [c.choices[0].finish_reason for c in stream if c.choices]
    assert finishes[-1] == "length"


# -- invalid values: 400 naming the param --------------------------------------------------------

INVALID: list[tuple[dict[str, Any], str]] = [
    ({"temperature": 2.5}, "temperature"),
    ({"temperature": -0.1}, "temperature"),
    ({"temperature": "hot"}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": -5}, "max_tokens"),
    ({"max_tokens": 1.5}, "max_tokens"),
    ({"max_completion_tokens": 0}, "max_completion_tokens"),
    ({"max_tokens": 5, "max_completion_tokens": 5}, "max_completion_tokens"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"stop": 3}, "stop"),
    ({"seed": "x"}, "seed"),
    ({"seed": True}, "seed"),
    ({"presence_penalty": 2.5}, "presence_penalty"),
    ({"frequency_penalty": -3}, "frequency_penalty"),
    ({"response_format": {"type": "xml"}}, "response_format.type"),
    ({"response_format": {"type": "json_schema"}}, "response_format"),
    ({"tools": [{"type": "retrieval"}]}, "tools.[0].type"),
    ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools.[0].function.name"),
    ({"tools": [WEATHER_TOOL], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"parallel_tool_calls": True}, "parallel_tool_calls"),
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
    ({"frobnicate": 1}, "frobnicate"),
]


@pytest.mark.parametrize(("extra", "param"), INVALID, ids=[p for _, p in INVALID])
def test_invalid_settings_are_400_naming_the_param(
    client: openai.OpenAI, fake_llm: FakeOpenAIServer, extra: dict[str, Any], param: str
) -> None:
    before = len(fake_llm.requests)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="default:gpt", messages=USER, extra_body=extra)
    error = assert_openai_error(caught.value.response, 400, "invalid_request_error", param=param)
    assert caught.value.param == param
    assert caught.value.message == f"Error code: 400 - {error['message']}"
    assert len(fake_llm.requests) == before  # nothing reached the upstream


def test_n_1_and_settings_that_ask_nothing_are_accepted(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="default:gpt",
        messages=USER,
        extra_body={"n": 1, "logprobs": False, "metadata": {"a": "b"}, "store": False},
    )
    assert len(completion.choices) == 1


INVALID_MESSAGES: list[tuple[list[dict[str, Any]], str]] = [
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "messages"),
    ([{"role": "system", "content": "a"}], "messages"),
    ([{"role": "tool", "content": "a"}], "messages.[0].tool_call_id"),
    ([{"role": "user", "content": None}], "messages.[0].content"),
    ([{"role": "robot", "content": "a"}], "messages.[0].role"),
    (
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
        "messages.[0].content.[0].type",
    ),
    (
        [
            {
                "role": "user",
                "content": "a",
                "tool_calls": [
                    {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            }
        ],
        "messages.[0].tool_calls",
    ),
]


@pytest.mark.parametrize(
    ("messages", "param"), INVALID_MESSAGES, ids=[str(i) for i in range(len(INVALID_MESSAGES))]
)
def test_invalid_messages_are_400_naming_the_param(
    server: ThreadedServer, messages: list[dict[str, Any]], param: str
) -> None:
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": "default:gpt", "messages": messages},
        headers=HEADERS_A,
        timeout=TIMEOUT,
    )
    assert_openai_error(response, 400, "invalid_request_error", param=param)


def test_developer_messages_are_system_messages(
    client: openai.OpenAI, fake_llm: FakeOpenAIServer
) -> None:
    client.chat.completions.create(
        model="default:gpt",
        messages=[{"role": "developer", "content": "rules"}, {"role": "user", "content": "hi"}],
    )
    assert upstream_body(fake_llm)["messages"][:2] == [
        {"role": "system", "content": "be brief"},
        {"role": "system", "content": "rules"},
    ]


# -- the Bot's bounds ----------------------------------------------------------------------------


def test_the_bot_bounds_what_a_request_may_set(
    client: openai.OpenAI, fake_llm: FakeOpenAIServer
) -> None:
    client.chat.completions.create(
        model="default:bounded", messages=USER, temperature=0.9, max_tokens=50
    )
    body = upstream_body(fake_llm)
    assert body["model"] == "bounded-model"
    assert body["temperature"] == 0.9 and body["max_tokens"] == 50  # the request wins
    client.chat.completions.create(model="default:bounded", messages=USER)
    body = upstream_body(fake_llm)
    assert body["temperature"] == 0.1 and body["max_tokens"] == 50  # the Bot's defaults

    before = len(fake_llm.requests)
    with pytest.raises(openai.BadRequestError) as above:
        client.chat.completions.create(model="default:bounded", messages=USER, max_tokens=51)
    error = assert_openai_error(
        above.value.response, 400, "invalid_request_error", param="max_tokens"
    )
    assert "at most 50" in error["message"]
    for name, value in (("top_p", 0.5), ("tools", [WEATHER_TOOL]), ("user", "u")):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(
                model="default:bounded", messages=USER, extra_body={name: value}
            )
        error = assert_openai_error(
            refused.value.response, 400, "invalid_request_error", param=name
        )
        assert error["message"] == f"this bot does not allow requests to set '{name}'"
    assert len(fake_llm.requests) == before
