"""Every error the API answers has the guide's body: API errors, library errors, HTTP errors,
request validation and unexpected exceptions (which never leak their text)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from kubebots.runtime import errors as lib
from kubebots.runtime.api import (
    AuthenticationError,
    BotCreationError,
    BotNotFoundError,
    ConfigurationError,
    ConversationNotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
    ValidationError,
    register_exception_handlers,
)
from kubebots.runtime.api.exception_handlers import error_body, http_error_name
from kubebots.runtime.api.http_errors import APIError, to_api_error

from .support import assert_error_body, client_for

SECRET = "sk-SECRET-0123456789"


class Item(BaseModel):
    message: str = Field(max_length=5)
    count: int = 0


def make_app(raise_: Callable[[], BaseException], *, request_id: str | None = None) -> FastAPI:
    app = FastAPI()
    register_exception_handlers(app)

    if request_id is not None:

        @app.middleware("http")
        async def set_request_id(request: Request, call_next: Any) -> Any:
            request.state.request_id = request_id
            return await call_next(request)

    @app.get("/raise")
    async def raise_it() -> None:
        raise raise_()

    @app.get("/items")
    async def items() -> list[str]:
        return []

    @app.post("/items")
    async def create(item: Item) -> Item:
        return item

    return app


async def fetch(raise_: Callable[[], BaseException], **kwargs: Any) -> Any:
    async with client_for(make_app(raise_, **kwargs), raise_app_exceptions=False) as client:
        return await client.get("/raise")


# -- APIError subclasses -----------------------------------------------------------------------


async def test_bot_not_found_matches_the_guide_example() -> None:
    response = await fetch(lambda: BotNotFoundError("unknown-bot"))
    body = assert_error_body(response, 404, "BotNotFoundError")
    assert body["message"] == "Bot with ID 'unknown-bot' not found"
    assert body["detail"] == {"bot_id": "unknown-bot"}


@pytest.mark.parametrize(
    ("exc", "status", "error", "headers"),
    [
        (BotCreationError("b", reason="r"), 503, "BotCreationError", {}),
        (ConversationNotFoundError("c"), 404, "ConversationNotFoundError", {}),
        (ValidationError("bad", {"field": "x"}), 422, "ValidationError", {}),
        (ConfigurationError("broken"), 500, "ConfigurationError", {}),
        (RateLimitError(retry_after=0.2), 429, "RateLimitError", {"retry-after": "1"}),
        (RateLimitError(), 429, "RateLimitError", {"retry-after": None}),
        (AuthenticationError(), 401, "AuthenticationError", {"www-authenticate": "Bearer"}),
        (PermissionDeniedError(), 403, "PermissionDeniedError", {}),
        (PayloadTooLargeError(max_bytes=9), 413, "PayloadTooLargeError", {}),
        (
            ServiceUnavailableError(retry_after=5),
            503,
            "ServiceUnavailableError",
            {"retry-after": "5"},
        ),
        (UpstreamError(), 502, "UpstreamError", {}),
        (UpstreamTimeoutError(), 504, "UpstreamTimeoutError", {}),
        (APIError("teapot", 418, error="Teapot"), 418, "Teapot", {}),
    ],
)
async def test_api_errors(
    exc: APIError, status: int, error: str, headers: dict[str, str | None]
) -> None:
    body = assert_error_body(await fetch(lambda: exc), status, error)
    response = await fetch(lambda: exc)
    for name, value in headers.items():
        assert response.headers.get(name) == value
    assert body["message"] == exc.message
    assert body["detail"] == (exc.detail or None)


async def test_empty_detail_is_null() -> None:
    body = assert_error_body(await fetch(lambda: ValidationError("bad")), 422, "ValidationError")
    assert body["detail"] is None


async def test_an_unserialisable_detail_is_dropped_not_a_crash() -> None:
    exc = RateLimitError(retry_after=float("inf"))
    body = assert_error_body(await fetch(lambda: exc), 429, "RateLimitError")
    assert body["detail"] is None


# -- library errors ----------------------------------------------------------------------------

LIBRARY_CASES: list[tuple[lib.KubebotsError, int, str]] = [
    (lib.UnknownBotError("no configuration", detail={"bot_id": "b"}), 404, "BotNotFoundError"),
    (lib.UnknownBotError("no such bot"), 404, "BotNotFoundError"),
    (lib.InvalidBotIdError("bot id is bad", detail={"field": "bot_id"}), 422, "ValidationError"),
    (lib.MessageRejectedError("message must be a non-empty string"), 422, "ValidationError"),
    (
        lib.ConfigurationError("bad config", errors=[("llm.model", "required")]),
        500,
        "ConfigurationError",
    ),
    (lib.BotCreationError("b", "storage failed (OSError)"), 503, "BotCreationError"),
    (lib.BotClosedError("bot 'b' is closed"), 503, "ServiceUnavailableError"),
    (lib.StorageError("storage broke"), 503, "ServiceUnavailableError"),
    (lib.RateLimitError("the LLM is rate limited"), 429, "RateLimitError"),
    (lib.LLMTimeoutError("the LLM did not answer"), 504, "UpstreamTimeoutError"),
    (lib.LLMUnavailableError("the LLM failed"), 502, "UpstreamError"),
    (lib.LLMRequestError("refused", status_code=404), 502, "UpstreamError"),
    (lib.LLMError("the LLM client failed"), 502, "UpstreamError"),
    (lib.KubebotsError("something else"), 500, "KubebotsError"),
]


@pytest.mark.parametrize(("exc", "status", "error"), LIBRARY_CASES)
async def test_library_error_mapping(exc: lib.KubebotsError, status: int, error: str) -> None:
    assert_error_body(await fetch(lambda: exc), status, error)
    translated = to_api_error(exc)
    assert (translated.status_code, translated.error) == (status, error)


async def test_unknown_bot_speaks_the_guide_message() -> None:
    exc = lib.UnknownBotError("no configuration for bot 'b'", detail={"bot_id": "b"})
    body = assert_error_body(await fetch(lambda: exc), 404, "BotNotFoundError")
    assert body["message"] == "Bot with ID 'b' not found"
    assert body["detail"] == {"bot_id": "b"}


async def test_invalid_bot_id_names_the_field() -> None:
    exc = lib.InvalidBotIdError("bot id is bad", detail={"field": "bot_id"})
    body = assert_error_body(await fetch(lambda: exc), 422, "ValidationError")
    assert body["detail"] == {"errors": [{"field": "bot_id", "reason": "bot id is bad"}]}


async def test_a_too_long_message_is_422_with_the_limit() -> None:
    exc = lib.MessageRejectedError(
        "message is 12 characters; this bot accepts at most 10",
        detail={"max_message_chars": 10, "length": 12},
    )
    body = assert_error_body(await fetch(lambda: exc), 422, "ValidationError")
    assert body["detail"]["max_message_chars"] == 10
    assert body["detail"]["length"] == 12
    assert body["detail"]["errors"][0]["field"] == "message"


async def test_configuration_error_keeps_the_library_message_and_fields() -> None:
    exc = lib.ConfigurationError("bad config", errors=[("llm.model", "required")], bot_id="b")
    body = assert_error_body(await fetch(lambda: exc), 500, "ConfigurationError")
    assert body["message"] == "bad config"
    assert body["detail"] == {
        "bot_id": "b",
        "errors": [{"field": "llm.model", "reason": "required"}],
    }


async def test_closed_bot_is_retryable() -> None:
    response = await fetch(lambda: lib.BotClosedError("bot 'b' is closed"))
    assert response.headers["retry-after"] == "1"


async def test_storage_errors_do_not_reveal_paths(caplog: pytest.LogCaptureFixture) -> None:
    exc = lib.StorageError("cannot open SQLite database '/srv/private/store.db': denied")
    with caplog.at_level(logging.WARNING, logger="kubebots.runtime.api"):
        response = await fetch(lambda: exc, request_id="req-7")
    body = assert_error_body(response, 503, "ServiceUnavailableError")
    assert "/srv/private" not in response.text
    assert body["detail"] == {"request_id": "req-7"}
    assert "/srv/private/store.db" in caplog.text  # the operator still sees it


@pytest.mark.parametrize(
    ("retry_after", "header", "sent"), [(2.5, "3", 2.5), (0.1, "1", 0.1), (None, "1", 1.0)]
)
async def test_upstream_rate_limit_always_has_retry_after(
    retry_after: float | None, header: str, sent: float
) -> None:
    exc = lib.RateLimitError("the LLM is rate limited (model at host:1)", retry_after=retry_after)
    response = await fetch(lambda: exc)
    body = assert_error_body(response, 429, "RateLimitError")
    assert response.headers.get("retry-after") == header
    assert body["detail"] == {"retry_after": sent, "code": "rate_limit_exceeded"}
    assert "host:1" not in response.text


async def test_upstream_refusal_keeps_the_upstream_status() -> None:
    exc = lib.LLMRequestError("the LLM refused the request (HTTP 404)", status_code=404)
    body = assert_error_body(await fetch(lambda: exc), 502, "UpstreamError")
    assert body["detail"] == {"status_code": 404, "code": "upstream_refused"}
    assert body["message"] == "The bot's LLM refused the request"


async def test_other_library_errors_keep_their_message_and_carry_the_request_id() -> None:
    body = assert_error_body(
        await fetch(lambda: lib.KubebotsError("plain failure"), request_id="req-1"),
        500,
        "KubebotsError",
    )
    assert body["message"] == "plain failure"
    assert body["detail"] == {"request_id": "req-1"}


def test_error_body_for_streams() -> None:
    body = error_body(lib.LLMUnavailableError("the LLM failed (HTTP 503, model at host:1)"))
    assert (body["error"], body["message"]) == ("UpstreamError", "The bot's LLM is unavailable")
    assert set(body) == {"error", "message", "detail", "timestamp"}
    assert error_body(RuntimeError(SECRET))["message"] == "An internal error occurred"
    assert SECRET not in str(error_body(RuntimeError(SECRET)))


# -- unexpected exceptions ---------------------------------------------------------------------


async def test_unexpected_errors_never_leak_their_text(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="kubebots.runtime.api"):
        response = await fetch(lambda: RuntimeError(f"db password {SECRET}"), request_id="req-42")
    body = assert_error_body(response, 500, "InternalServerError")
    assert body["message"] == "An internal error occurred"
    assert body["detail"] == {"request_id": "req-42"}
    assert SECRET not in response.text
    assert "RuntimeError" not in response.text
    records = [r for r in caplog.records if r.name == "kubebots.runtime.api"]
    assert len(records) == 1
    assert "req-42" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert SECRET in str(records[0].exc_info[1])


async def test_unexpected_error_without_request_id_has_null_detail() -> None:
    response = await fetch(lambda: ValueError(SECRET))
    body = assert_error_body(response, 500, "InternalServerError")
    assert body["detail"] is None
    assert SECRET not in response.text


# -- HTTP errors and request validation --------------------------------------------------------


async def test_unknown_route_is_404_not_found() -> None:
    async with client_for(make_app(RuntimeError)) as client:
        response = await client.get("/nowhere")
    body = assert_error_body(response, 404, "NotFound")
    assert body["message"] == "Not Found"
    assert body["detail"] is None


async def test_wrong_method_is_405_with_allow() -> None:
    async with client_for(make_app(RuntimeError)) as client:
        response = await client.delete("/items")
    assert_error_body(response, 405, "MethodNotAllowed")
    # Starlette names the methods of the first route matching the path.
    assert "GET" in response.headers["allow"]


@pytest.mark.parametrize(
    ("exc", "status", "error", "message", "detail"),
    [
        (HTTPException(413), 413, "PayloadTooLarge", "Request Entity Too Large", None),
        (HTTPException(400, "no good"), 400, "BadRequest", "no good", None),
        (HTTPException(409, {"id": "x"}), 409, "Conflict", "Conflict", {"id": "x"}),
        (HTTPException(400, ["a", "b"]), 400, "BadRequest", "Bad Request", {"detail": ["a", "b"]}),
        (HTTPException(422), 422, "UnprocessableEntity", "Unprocessable Entity", None),
        (HTTPException(499, "odd"), 499, "HTTPError", "odd", None),
    ],
)
async def test_http_exceptions(
    exc: HTTPException, status: int, error: str, message: str, detail: object
) -> None:
    body = assert_error_body(await fetch(lambda: exc), status, error)
    assert body["message"] == message
    assert body["detail"] == detail


async def test_http_exception_headers_are_kept() -> None:
    response = await fetch(lambda: HTTPException(429, "slow", headers={"Retry-After": "7"}))
    assert_error_body(response, 429, "TooManyRequests")
    assert response.headers["retry-after"] == "7"


async def test_http_exception_without_body_status() -> None:
    response = await fetch(lambda: HTTPException(304))
    assert response.status_code == 304
    assert response.content == b""


def test_http_error_names() -> None:
    assert http_error_name(404) == "NotFound"
    assert http_error_name(405) == "MethodNotAllowed"
    assert http_error_name(503) == "ServiceUnavailable"
    assert http_error_name(418) == "ImATeapot"


async def test_request_validation_lists_fields_without_values() -> None:
    async with client_for(make_app(RuntimeError)) as client:
        response = await client.post("/items", json={"message": SECRET, "count": "many-" + SECRET})
    body = assert_error_body(response, 422, "ValidationError")
    errors = body["detail"]["errors"]
    assert {e["field"] for e in errors} == {"body.message", "body.count"}
    assert all(set(e) == {"field", "reason"} for e in errors)
    assert body["message"].startswith("Invalid request: body.")
    assert "(and 1 more)" in body["message"]
    assert SECRET not in response.text


async def test_request_validation_missing_body_and_bad_json() -> None:
    async with client_for(make_app(RuntimeError)) as client:
        missing = await client.post("/items", json={})
        broken = await client.post(
            "/items", content=b"{not json", headers={"content-type": "application/json"}
        )
    body = assert_error_body(missing, 422, "ValidationError")
    assert body["detail"]["errors"] == [{"field": "body.message", "reason": "Field required"}]
    assert body["message"] == "Invalid request: body.message: Field required"
    assert_error_body(broken, 422, "ValidationError")
