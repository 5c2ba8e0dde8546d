"""``/v1`` as HTTP: ``GET /v1/models/{model}``, OpenAI's error shape (and the guide's elsewhere),
``x-ratelimit-*`` headers, estimated usage, CORS. The official SDK is the client where it can be.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from kubebots.runtime.api.app.openai_errors import openai_error, param_of
from kubebots.runtime.llm.base import ChatMessage, Completion, Delta, Settings, UsageSink
from kubebots.runtime.llm.echo import EchoProvider
from kubebots.runtime.schema.llm import LLMConfig
from kubebots.runtime.testing import FakeOpenAIServer, ThreadedServer

from .conftest import HEADERS_A, KEYS, default_bots, put_bots, running_app
from .helpers import TIMEOUT, assert_error, default_bots_server
from .v1_support import assert_openai_error

KEY_A = "key-a-0123456789"
HI: list[Any] = [{"role": "user", "content": "hi there"}]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeOpenAIServer
) -> Iterator[ThreadedServer]:
    with default_bots_server(tmp_path_factory.mktemp("v1http"), fake_llm) as running:
        yield running


def sdk(server: ThreadedServer, key: str = KEY_A) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, timeout=TIMEOUT, max_retries=0)


# -- models -------------------------------------------------------------------------------------


def test_models_retrieve(server: ThreadedServer) -> None:
    with sdk(server) as client:
        model = client.models.retrieve("default:gpt")
        assert (model.id, model.object, model.owned_by) == ("default:gpt", "model", "kubebots")
        assert model in client.models.list().data
        with pytest.raises(openai.NotFoundError) as caught:
            client.models.retrieve("default:nope")
        assert caught.value.code == "model_not_found"
        assert_openai_error(caught.value.response, 404, "not_found_error", code="model_not_found")
    # A bot outside the client's allow-list does not exist for it.
    with sdk(server, "key-n-0123456789") as narrow:
        assert narrow.models.retrieve("default:echo").id == "default:echo"
        with pytest.raises(openai.NotFoundError):
            narrow.models.retrieve("default:gpt")


async def test_models_retrieve_async(server: ThreadedServer) -> None:
    async with openai.AsyncOpenAI(
        base_url=server.url + "/v1", api_key=KEY_A, timeout=TIMEOUT, max_retries=0
    ) as client:
        assert (await client.models.retrieve("default:echo")).id == "default:echo"
        with pytest.raises(openai.NotFoundError) as caught:
            await client.models.retrieve("default:nope")
        assert caught.value.message == "Error code: 404 - Bot with ID 'default:nope' not found"


# -- errors: OpenAI's shape under /v1, the guide's elsewhere -------------------------------------


def test_v1_errors_have_openai_shape_and_guide_routes_keep_theirs(server: ThreadedServer) -> None:
    with httpx.Client(base_url=server.url, headers=HEADERS_A, timeout=TIMEOUT) as c:
        # FastAPI's validation: 400 on /v1 naming the param, 422 in the guide's shape elsewhere
        missing = c.post("/v1/chat/completions", json={"model": "default:echo"})
        error = assert_openai_error(missing, 400, "invalid_request_error", param="messages")
        assert error["message"].startswith("Invalid value for 'messages': ")
        assert_error(c.post("/bots/default:echo/chat", json={}), 422, "ValidationError")
        not_json = c.post("/v1/chat/completions", content=b"{", headers={"content-type": "x"})
        assert_openai_error(not_json, 400, "invalid_request_error", param=None)
        # unknown bots and routes
        unknown = c.post("/v1/chat/completions", json={"model": "default:nope", "messages": HI})
        assert_openai_error(unknown, 404, "not_found_error", code="model_not_found")
        chat = {"message": "hi", "conversation_id": "c"}
        assert_error(c.post("/bots/default:nope/chat", json=chat), 404, "BotNotFoundError")
        assert_openai_error(c.get("/v1/nothing"), 404, "not_found_error")
        assert_error(c.get("/nothing"), 404, "NotFound")
        wrong_method = c.get("/v1/chat/completions")
        assert_openai_error(wrong_method, 405, "invalid_request_error")
        assert wrong_method.headers["allow"] == "POST"


def test_upstream_failures_reach_the_sdk_as_its_error_classes(
    server: ThreadedServer, fake_llm: FakeOpenAIServer
) -> None:
    with sdk(server) as client:
        fake_llm.inject(503, times=10, message="secret upstream detail at 10.0.0.7:8000")
        try:
            with pytest.raises(openai.InternalServerError) as caught:
                client.chat.completions.create(model="default:gpt", messages=HI)
        finally:
            fake_llm.reset()
        error = assert_openai_error(
            caught.value.response, 502, "api_error", code="upstream_unavailable"
        )
        assert "10.0.0.7" not in caught.value.response.text and "secret" not in error["message"]
        assert caught.value.message == f"Error code: 502 - {error['message']}"


def test_an_error_inside_a_stream_has_openai_shape(
    server: ThreadedServer, fake_llm: FakeOpenAIServer
) -> None:
    with sdk(server) as client:
        fake_llm.inject(error_after=2)
        try:
            with (
                pytest.raises(openai.APIError) as caught,
                client.chat.completions.create(
                    model="default:gpt", messages=HI, stream=True
                ) as stream,
            ):
                list(stream)
        finally:
            fake_llm.reset()
    body = caught.value.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}, body
    assert body["type"] == "api_error"
    assert caught.value.message == body["message"]


@pytest.mark.parametrize(
    ("status", "guide", "expected"),
    [
        (
            403,
            {"error": "PermissionDeniedError", "message": "no"},
            ("permission_error", "permission_denied"),
        ),
        (
            413,
            {"error": "PayloadTooLargeError", "message": "big"},
            ("invalid_request_error", "request_too_large"),
        ),
        (
            429,
            {"error": "RateLimitError", "message": "slow"},
            ("rate_limit_error", "rate_limit_exceeded"),
        ),
        (
            500,
            {"error": "InternalServerError", "message": "x"},
            ("api_error", "internal_server_error"),
        ),
        (
            503,
            {"error": "ServiceUnavailableError", "message": "x"},
            ("api_error", "service_unavailable_error"),
        ),
        (
            504,
            {"error": "UpstreamTimeoutError", "message": "x"},
            ("api_error", "upstream_timeout_error"),
        ),
        (
            400,
            {
                "error": "UpstreamBadRequestError",
                "message": "too long",
                "detail": {"code": "context_length_exceeded"},
            },
            ("invalid_request_error", "context_length_exceeded"),
        ),
    ],
)
def test_openai_error_mapping(
    status: int, guide: dict[str, Any], expected: tuple[str, str]
) -> None:
    answered, body = openai_error(status, guide)
    assert answered == status
    assert body == {
        "error": {
            "message": guide["message"],
            "type": expected[0],
            "param": None,
            "code": expected[1],
        }
    }


@pytest.mark.parametrize(
    ("field", "param"),
    [
        ("body.temperature", "temperature"),
        ("body.stop.list[str]", "stop"),
        ("body.messages.0.content", "messages.[0].content"),
        ("body.tool_choice.NamedToolChoice.function.name", "tool_choice.function.name"),
        ("body", None),
        ("header.X-Conversation-Id", None),
    ],
)
def test_param_of(field: str, param: str | None) -> None:
    assert param_of(field) == param


# -- x-ratelimit-* headers ------------------------------------------------------------------------


def test_rate_limit_headers_for_a_limited_client(server: ThreadedServer) -> None:
    with sdk(server, "key-l-0123456789") as client:  # 60 requests a minute
        first = client.chat.completions.with_raw_response.create(model="default:echo", messages=HI)
        second = client.chat.completions.with_raw_response.create(
            model="default:echo", messages=HI, stream=True
        )
        second.parse().close()
    for response in (first, second):
        assert response.headers["x-ratelimit-limit-requests"] == "60"
        assert response.headers["x-ratelimit-reset-requests"] == "1m0s"
    remaining = int(first.headers["x-ratelimit-remaining-requests"])
    assert 0 <= remaining < 60
    assert int(second.headers["x-ratelimit-remaining-requests"]) == remaining - 1
    # a client without limits gets none
    with sdk(server) as unlimited:
        free = unlimited.chat.completions.with_raw_response.create(
            model="default:echo", messages=HI
        )
    assert not [h for h in free.headers if h.startswith("x-ratelimit-")]


def test_429_has_openai_shape_retry_after_and_rate_limit_headers(
    tmp_path: Path, fake_llm: FakeOpenAIServer
) -> None:
    keys = {
        "clients": [
            {"clientId": "one", "keys": ["key-one-0123456789"], "requestsPerMinute": 1},
            {"clientId": "budget", "keys": ["key-bud-0123456789"], "tokensPerMinute": 5},
        ]
    }
    url = f"sqlite:{tmp_path / 'store.db'}"
    put_bots(url, "kubebots_", default_bots(fake_llm))
    with running_app(url, keys=keys) as server:
        with sdk(server, "key-one-0123456789") as client:
            ok = client.chat.completions.with_raw_response.create(model="default:echo", messages=HI)
            assert ok.headers["x-ratelimit-remaining-requests"] == "0"
            with pytest.raises(openai.RateLimitError) as caught:
                client.chat.completions.create(model="default:echo", messages=HI)
        response = caught.value.response
        error = assert_openai_error(response, 429, "rate_limit_error", code="rate_limit_exceeded")
        assert error["message"] == "rate limit of 1 requests per minute exceeded"
        assert int(response.headers["retry-after"]) >= 1
        assert response.headers["x-ratelimit-limit-requests"] == "1"
        assert response.headers["x-ratelimit-remaining-requests"] == "0"
        assert response.headers["x-ratelimit-reset-requests"].endswith("s")

        with sdk(server, "key-bud-0123456789") as client:
            ok = client.chat.completions.with_raw_response.create(
                model="default:echo", messages=[{"role": "user", "content": "a b c d e f"}]
            )
            assert ok.headers["x-ratelimit-limit-tokens"] == "5"
            assert ok.headers["x-ratelimit-remaining-tokens"] == "5"
            deadline = time.monotonic() + 10  # the charge leaves after the reply
            while True:
                try:
                    client.chat.completions.create(model="default:echo", messages=HI)
                except openai.RateLimitError as refused:
                    assert refused.response.headers["x-ratelimit-remaining-tokens"] == "0"
                    assert "token budget" in refused.message
                    break
                assert time.monotonic() < deadline, "the budget was never spent"
                time.sleep(0.05)


# -- usage: the provider's, or an estimate said to be one ----------------------------------------


class NoUsage:
    """The echo provider, except that it never reports usage (as some upstreams do not)."""

    def __init__(self) -> None:
        self._echo = EchoProvider()

    async def complete(
        self, messages: Sequence[ChatMessage], *, settings: Settings | None = None
    ) -> Completion:
        completion = await self._echo.complete(messages, settings=settings)
        return dataclasses.replace(completion, usage=None)

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        settings: Settings | None = None,
        on_usage: UsageSink | None = None,
    ) -> AsyncIterator[Delta]:
        async for delta in self._echo.stream(messages, settings=settings):
            yield delta

    async def close(self) -> None:
        await self._echo.close()


def test_usage_without_the_providers_count_is_an_estimate_said_so(tmp_path: Path) -> None:
    url = f"sqlite:{tmp_path / 'store.db'}"
    put_bots(url, "kubebots_", {"default:quiet": {"llm": {"provider": "echo"}}})

    def providers(llm: LLMConfig, key: str | None) -> NoUsage:
        return NoUsage()

    with running_app(url, providers=providers) as server, sdk(server) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="default:quiet", messages=[{"role": "user", "content": "four words right here"}]
        )
        assert raw.headers["x-kubebots-usage"] == "estimated"
        usage = raw.parse().usage
        assert usage is not None
        assert (usage.prompt_tokens, usage.completion_tokens) == (4, 5)  # "echo: " + 4 words
        with client.chat.completions.create(
            model="default:quiet",
            messages=HI,
            stream=True,
            stream_options={"include_usage": True},
        ) as stream:
            last = list(stream)[-1]
        assert last.usage is not None and last.usage.completion_tokens == 3
        assert last.usage.model_extra == {"estimated": True}


def test_provider_usage_is_not_marked(server: ThreadedServer) -> None:
    with sdk(server) as client:
        raw = client.chat.completions.with_raw_response.create(model="default:gpt", messages=HI)
        assert "x-kubebots-usage" not in raw.headers
        with client.chat.completions.create(
            model="default:gpt", messages=HI, stream=True, stream_options={"include_usage": True}
        ) as stream:
            last = list(stream)[-1]
    assert last.usage is not None and not last.usage.model_extra


# -- CORS -----------------------------------------------------------------------------------------

PREFLIGHT = {
    "Origin": "https://app.example",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type",
}


def test_cors_is_off_by_default(server: ThreadedServer) -> None:
    response = httpx.options(f"{server.url}/v1/chat/completions", headers=PREFLIGHT)
    assert "access-control-allow-origin" not in response.headers
    plain = httpx.get(
        f"{server.url}/v1/models", headers={**HEADERS_A, "Origin": PREFLIGHT["Origin"]}
    )
    assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers


def test_cors_origins_enable_cors(tmp_path: Path, fake_llm: FakeOpenAIServer) -> None:
    url = f"sqlite:{tmp_path / 'store.db'}"
    put_bots(url, "kubebots_", default_bots(fake_llm))
    with running_app(url, keys=KEYS, cors_origins=["https://app.example"]) as server:
        preflight = httpx.options(f"{server.url}/v1/chat/completions", headers=PREFLIGHT)
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        other = httpx.options(
            f"{server.url}/v1/chat/completions",
            headers={**PREFLIGHT, "Origin": "https://evil.example"},
        )
        assert "access-control-allow-origin" not in other.headers
        response = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={"model": "default:echo", "messages": HI},
            headers={**HEADERS_A, "Origin": "https://app.example"},
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        exposed = response.headers["access-control-expose-headers"].lower()
        assert "x-ratelimit-remaining-requests" in exposed and "x-request-id" in exposed


def test_a_body_over_the_limit_is_a_413_in_openai_shape_on_v1_only(
    server: ThreadedServer,
) -> None:
    """The middleware answers an oversized body itself, before any route: under /v1 in
    OpenAI's shape (the SDK raises its error with our message), elsewhere in the guide's."""
    big = {"model": "default:echo", "messages": [{"role": "user", "content": "x" * 1_100_000}]}
    with sdk(server) as client, pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(**big)  # type: ignore[call-overload]
    error = assert_openai_error(
        caught.value.response, 413, "invalid_request_error", code="request_too_large"
    )
    assert "exceeds" in error["message"] and caught.value.status_code == 413
    guide = httpx.post(
        f"{server.url}/bots/default:echo/chat",
        json={"message": "x" * 1_100_000, "conversation_id": "c"},
        headers=HEADERS_A,
        timeout=TIMEOUT,
    )
    assert_error(guide, 413, "PayloadTooLargeError")
