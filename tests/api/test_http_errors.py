"""The API error classes: the guide's constructor shapes, statuses, details and headers."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubebots import runtime
from kubebots.runtime import api
from kubebots.runtime.api import (
    APIError,
    AuthenticationError,
    BotCreationError,
    BotManagerNotInitialisedError,
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
)
from kubebots.runtime.api.http_errors import retry_after_header


def test_the_guide_names_are_exported() -> None:
    guide = {
        "init_bot_manager",
        "get_bot_manager",
        "reset_bot_manager",
        "BotManagerDep",
        "APIError",
        "BotNotFoundError",
        "BotCreationError",
        "ConversationNotFoundError",
        "ValidationError",
        "ConfigurationError",
        "RateLimitError",
        "register_exception_handlers",
    }
    assert guide <= set(api.__all__)
    assert all(hasattr(api, name) for name in api.__all__)


def test_api_errors_are_not_the_library_errors() -> None:
    for name in ("BotCreationError", "ConfigurationError", "RateLimitError"):
        assert getattr(api, name) is not getattr(runtime, name)
        assert not issubclass(getattr(api, name), runtime.KubebotsError)


def test_bot_not_found_has_the_guide_shape() -> None:
    err = BotNotFoundError("unknown-bot")
    assert (err.status_code, err.error) == (404, "BotNotFoundError")
    assert err.message == str(err) == "Bot with ID 'unknown-bot' not found"
    assert err.detail == {"bot_id": "unknown-bot"}
    assert err.headers is None


@pytest.mark.parametrize(
    ("err", "status", "error"),
    [
        (BotCreationError("b", reason="storage down"), 503, "BotCreationError"),
        (BotCreationError("b", "x", status_code=500), 500, "BotCreationError"),
        (ConversationNotFoundError("c-1"), 404, "ConversationNotFoundError"),
        (ValidationError("bad", {"field": "x"}), 422, "ValidationError"),
        (ConfigurationError("broken"), 500, "ConfigurationError"),
        (RateLimitError(), 429, "RateLimitError"),
        (AuthenticationError(), 401, "AuthenticationError"),
        (PermissionDeniedError(), 403, "PermissionDeniedError"),
        (PayloadTooLargeError(max_bytes=10), 413, "PayloadTooLargeError"),
        (ServiceUnavailableError(), 503, "ServiceUnavailableError"),
        (UpstreamError(), 502, "UpstreamError"),
        (UpstreamTimeoutError(), 504, "UpstreamTimeoutError"),
        (APIError("teapot", 418, error="Teapot"), 418, "Teapot"),
        (APIError("plain"), 500, "APIError"),
    ],
)
def test_statuses_and_names(err: APIError, status: int, error: str) -> None:
    assert (err.status_code, err.error) == (status, error)
    assert isinstance(err.message, str) and err.message


def test_details_follow_the_constructor_arguments() -> None:
    assert BotCreationError("b", reason="r").detail == {"bot_id": "b", "reason": "r"}
    assert BotCreationError("b", reason="r").message == "Failed to create bot 'b': r"
    assert ConversationNotFoundError("c").message == "Conversation with ID 'c' not found"
    assert ConversationNotFoundError("c").detail == {"conversation_id": "c"}
    assert ValidationError("bad").detail == {}
    assert PayloadTooLargeError(max_bytes=10).detail == {"max_bytes": 10}
    assert RateLimitError(message="slow down", retry_after=2).detail == {"retry_after": 2}


def test_status_override_is_per_instance() -> None:
    APIError("x", 418)
    assert APIError.status_code == 500
    assert APIError("y").status_code == 500


def test_authentication_asks_for_a_bearer_token() -> None:
    assert AuthenticationError("no key").headers == {"WWW-Authenticate": "Bearer"}


@pytest.mark.parametrize(
    ("seconds", "header"),
    [(0.0, "1"), (0.2, "1"), (1.0, "1"), (1.01, "2"), (2.5, "3"), (30, "30"), (-5, "1")],
)
def test_retry_after_rounds_up_to_whole_seconds(seconds: float, header: str) -> None:
    assert RateLimitError(retry_after=seconds).headers == {"Retry-After": header}
    assert ServiceUnavailableError(retry_after=seconds).headers == {"Retry-After": header}


@pytest.mark.parametrize("seconds", [None, math.inf, math.nan])
def test_no_retry_after_when_unknown(seconds: float | None) -> None:
    assert RateLimitError(retry_after=seconds).headers is None


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_retry_after_is_never_early_and_never_zero(seconds: float) -> None:
    header = retry_after_header(seconds)
    assert header is not None
    value = int(header["Retry-After"])
    assert value >= 1
    assert value >= seconds
    assert value < max(seconds, 1) + 1


def test_not_initialised_is_a_503_and_a_runtime_error() -> None:
    err = BotManagerNotInitialisedError()
    assert isinstance(err, RuntimeError)
    assert isinstance(err, ServiceUnavailableError)
    assert (err.status_code, err.error) == (503, "ServiceUnavailableError")
    assert "not initialised" in err.message
