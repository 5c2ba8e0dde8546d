"""The official ``openai`` SDK, unchanged, against the runtime's OpenAI-compatible API.

The runtime runs on real uvicorn (loopback); ``default:gpt`` is an ``openai``-provider bot whose
upstream is the :class:`FakeOpenAIServer` (reply ``"[model] <system prompt> | <last user>"``), so
what the bot sends upstream is checked in ``fake_llm.requests``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from kubebots.runtime.testing import FakeOpenAIServer, ThreadedServer

from .conftest import HEADERS_A, HEADERS_B
from .helpers import TIMEOUT, assert_error, conversation_path, default_bots_server
from .v1_support import assert_openai_error

KEY_A = "key-a-0123456789"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeOpenAIServer
) -> Iterator[ThreadedServer]:
    with default_bots_server(tmp_path_factory.mktemp("sdk"), fake_llm) as running:
        yield running


@pytest.fixture
def client(server: ThreadedServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=server.url + "/v1", api_key=KEY_A, timeout=TIMEOUT, max_retries=0
    ) as sdk:
        yield sdk


def upstream_messages(fake: FakeOpenAIServer) -> list[dict[str, Any]]:
    """The messages of the last request the fake upstream received."""
    request = fake.requests[-1]
    assert request["path"] == "/v1/chat/completions"
    messages: list[dict[str, Any]] = request["body"]["messages"]
    return messages


def collect(chunks: list[ChatCompletionChunk]) -> tuple[str, list[str | None]]:
    """The streamed text and the finish reasons of the chunks that carry a choice."""
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, [c.choices[0].finish_reason for c in chunks if c.choices]


def words(text: str) -> int:
    return len(text.split())


# -- models -----------------------------------------------------------------------------------


def test_models_list_returns_the_bots(client: openai.OpenAI) -> None:
    page = client.models.list()
    assert [m.id for m in page.data] == ["default:echo", "default:gpt"]
    for model in page.data:
        assert model.object == "model"
        assert model.owned_by == "kubebots"
        assert model.created > 0
    assert client.models.list().data == page.data  # stable between calls


# -- the echo bot -----------------------------------------------------------------------------


def test_echo_completion(client: openai.OpenAI) -> None:
    history: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "echo: first"},
        {"role": "user", "content": "hello there"},
    ]
    completion = client.chat.completions.create(model="default:echo", messages=history)
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "default:echo"
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == "echo: hello there"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == words("echo: hello there")
    assert completion.usage.prompt_tokens > 0
    total = completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert completion.usage.total_tokens == total


@pytest.mark.parametrize("include_usage", [False, True])
def test_echo_streaming(client: openai.OpenAI, include_usage: bool) -> None:
    options: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}
    with client.chat.completions.create(
        model="default:echo",
        messages=[{"role": "user", "content": "stream this reply"}],
        stream=True,
        **options,
    ) as stream:
        chunks = list(stream)
    text, finishes = collect(chunks)
    assert text == "echo: stream this reply"
    assert len(chunks) >= 4  # role chunk, at least two content chunks, the stop chunk
    assert chunks[0].choices[0].delta.role == "assistant"
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].id.startswith("chatcmpl-")
    assert {c.model for c in chunks} == {"default:echo"}
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    if include_usage:
        last = chunks[-1]
        assert last.choices == []
        assert last.usage is not None
        assert last.usage.completion_tokens == words(text)
        assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
        assert all(c.usage is None for c in chunks[:-1])
    else:
        assert all(c.choices for c in chunks)
        assert all(c.usage is None for c in chunks)


# -- the openai-provider bot (fake upstream) ---------------------------------------------------

HISTORY: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "the client's own instructions"},
    {"role": "user", "content": "first question"},
    {"role": "assistant", "content": "first answer"},
    {"role": "user", "content": [{"type": "text", "text": "second question"}]},
]
#: What the bot must send upstream for HISTORY: its system prompt first, then the client's.
SENT = [
    {"role": "system", "content": "be brief"},
    {"role": "system", "content": "the client's own instructions"},
    {"role": "user", "content": "first question"},
    {"role": "assistant", "content": "first answer"},
    {"role": "user", "content": "second question"},
]
REPLY = "[fake-model] be brief | second question"


def test_gpt_completion_sends_system_prompt_and_history(
    client: openai.OpenAI, fake_llm: FakeOpenAIServer
) -> None:
    completion = client.chat.completions.create(model="default:gpt", messages=HISTORY)
    assert completion.choices[0].message.content == REPLY
    assert completion.model == "default:gpt"
    request = fake_llm.requests[-1]
    assert request["body"]["model"] == "fake-model"
    assert request["body"].get("stream") in (None, False)
    assert upstream_messages(fake_llm) == SENT
    # the upstream's usage is passed through
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == sum(words(m["content"]) for m in SENT)
    assert completion.usage.completion_tokens == words(REPLY)


@pytest.mark.parametrize("include_usage", [False, True])
def test_gpt_streaming_sends_system_prompt_and_history(
    client: openai.OpenAI, fake_llm: FakeOpenAIServer, include_usage: bool
) -> None:
    options: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = client.chat.completions.create(
        model="default:gpt", messages=HISTORY, stream=True, **options
    )
    with stream:
        chunks = list(stream)
    text, finishes = collect(chunks)
    assert text == REPLY
    assert finishes[-1] == "stop"
    assert fake_llm.requests[-1]["body"]["stream"] is True
    # the provider always asks for the usage chunk: the turn is charged what upstream counted
    assert fake_llm.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    assert upstream_messages(fake_llm) == SENT
    usage = [c.usage for c in chunks if c.usage is not None]
    if include_usage:
        assert len(usage) == 1 and chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == words(REPLY)
        assert chunks[-1].usage.prompt_tokens == sum(words(m["content"]) for m in SENT)
    else:
        assert usage == []


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_unknown_model_is_not_found(client: openai.OpenAI, stream: bool) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(
            model="default:no-such-bot",
            messages=[{"role": "user", "content": "hi"}],
            stream=stream,
        )
    assert caught.value.status_code == 404
    error = assert_openai_error(
        caught.value.response, 404, "not_found_error", code="model_not_found"
    )
    assert error["message"] == "Bot with ID 'default:no-such-bot' not found"
    # the SDK shows the server's message (it reads error.message)
    assert caught.value.message == f"Error code: 404 - {error['message']}"
    assert caught.value.code == "model_not_found"


def test_missing_or_wrong_key_is_an_authentication_error(server: ThreadedServer) -> None:
    with openai.OpenAI(
        base_url=server.url + "/v1", api_key=KEY_A, timeout=TIMEOUT, max_retries=0
    ) as sdk:
        # The SDK refuses to run without a key, so the header is omitted explicitly.
        with pytest.raises(openai.AuthenticationError) as missing:
            sdk.models.list(extra_headers={"Authorization": openai.omit})
        assert "authorization" not in missing.value.request.headers
        assert_openai_error(
            missing.value.response, 401, "authentication_error", code="invalid_api_key"
        )
        with pytest.raises(openai.AuthenticationError):
            sdk.chat.completions.create(
                model="default:echo",
                messages=[{"role": "user", "content": "hi"}],
                extra_headers={"Authorization": openai.omit},
            )
    with openai.OpenAI(
        base_url=server.url + "/v1", api_key="not-a-key-at-all", timeout=TIMEOUT, max_retries=0
    ) as wrong:
        with pytest.raises(openai.AuthenticationError) as caught:
            wrong.chat.completions.create(
                model="default:echo", messages=[{"role": "user", "content": "hi"}]
            )
        error = assert_openai_error(
            caught.value.response, 401, "authentication_error", code="invalid_api_key"
        )
        assert error["message"] == "the API key is not valid"
        assert caught.value.message == "Error code: 401 - the API key is not valid"
        assert "not-a-key-at-all" not in str(error)
        assert caught.value.response.headers["www-authenticate"].lower().startswith("bearer")


# -- X-Conversation-Id: stateful completions ---------------------------------------------------


def stored(server: ThreadedServer, bot_id: str, cid: str, headers: dict[str, str]) -> Any:
    return httpx.get(server.url + conversation_path(bot_id, cid), headers=headers, timeout=TIMEOUT)


def conversations(server: ThreadedServer, bot_id: str) -> list[str]:
    response = httpx.get(
        f"{server.url}/bots/{bot_id}/conversations", headers=HEADERS_A, timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text
    found: list[str] = response.json()["conversations"]
    return found


@pytest.mark.parametrize("bot_id", ["default:echo", "default:gpt"])
def test_conversation_header_makes_completions_stateful(
    client: openai.OpenAI, server: ThreadedServer, fake_llm: FakeOpenAIServer, bot_id: str
) -> None:
    cid = f"sdk-{uuid.uuid4().hex}"
    header = {"X-Conversation-Id": cid}

    def reply(text: str) -> str:
        return f"echo: {text}" if bot_id == "default:echo" else f"[fake-model] be brief | {text}"

    first = client.chat.completions.create(
        model=bot_id,
        messages=[{"role": "user", "content": "my name is Ann"}],
        extra_headers=header,
        user="end-user-7",
    )
    assert first.choices[0].message.content == reply("my name is Ann")
    conversation = stored(server, bot_id, cid, HEADERS_A)
    assert conversation.status_code == 200, conversation.text
    assert conversation.json()["client_id"] == "tenant-a"
    assert [m["content"] for m in conversation.json()["messages"]] == [
        "my name is Ann",
        reply("my name is Ann"),
    ]

    # The second call sees the stored first turn; the history it sends itself is ignored.
    second = client.chat.completions.create(
        model=bot_id,
        messages=[
            {"role": "user", "content": "a made-up past"},
            {"role": "assistant", "content": "that never happened"},
            {"role": "user", "content": "what is my name?"},
        ],
        extra_headers=header,
    )
    assert second.choices[0].message.content == reply("what is my name?")
    if bot_id == "default:gpt":
        assert upstream_messages(fake_llm) == [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "my name is Ann"},
            {"role": "assistant", "content": reply("my name is Ann")},
            {"role": "user", "content": "what is my name?"},
        ]

    # A streamed turn is stored too.
    with client.chat.completions.create(
        model=bot_id,
        messages=[{"role": "user", "content": "and now streamed"}],
        extra_headers=header,
        stream=True,
    ) as stream:
        text, _ = collect(list(stream))
    assert text == reply("and now streamed")
    if bot_id == "default:gpt":
        assert [m["content"] for m in upstream_messages(fake_llm)] == [
            "be brief",
            "my name is Ann",
            reply("my name is Ann"),
            "what is my name?",
            reply("what is my name?"),
            "and now streamed",
        ]

    messages = stored(server, bot_id, cid, HEADERS_A).json()["messages"]
    assert [(m["seq"], m["role"], m["content"]) for m in messages] == [
        (1, "user", "my name is Ann"),
        (2, "assistant", reply("my name is Ann")),
        (3, "user", "what is my name?"),
        (4, "assistant", reply("what is my name?")),
        (5, "user", "and now streamed"),
        (6, "assistant", reply("and now streamed")),
    ]

    # The conversation is tenant-a's alone, and calls without the header store nothing.
    assert_error(stored(server, bot_id, cid, HEADERS_B), 404, "ConversationNotFoundError")
    before = conversations(server, bot_id)
    assert cid in before
    stateless = client.chat.completions.create(
        model=bot_id, messages=[{"role": "user", "content": "no memory"}]
    )
    assert stateless.choices[0].message.content == reply("no memory")
    assert conversations(server, bot_id) == before
    assert len(stored(server, bot_id, cid, HEADERS_A).json()["messages"]) == 6
