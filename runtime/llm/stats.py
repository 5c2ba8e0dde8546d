"""Counts of LLM calls per bot, endpoint and outcome, for metrics.

The providers record here; whoever exports metrics (the API's Prometheus collector) reads
:meth:`LLMRequestStats.snapshot`, so the LLM layer never imports the API layer. An endpoint is
labelled ``model@host`` (:func:`endpoint_label`): never a key, a path or a query.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

from ..errors import (
    LLMBadRequestError,
    LLMError,
    LLMRequestError,
    LLMTimeoutError,
    LLMUnavailableError,
    RateLimitError,
)

#: What became of one call to one endpoint.
Outcome = Literal[
    "ok",  # answered (a stream: ran to its end)
    "rate_limited",  # 429
    "timeout",  # no answer in time
    "unavailable",  # 5xx, connection failure, broken stream
    "bad_request",  # 400: the request cannot succeed as sent
    "refused",  # 401/403/404/other 4xx: the bot's key or model is wrong
    "error",  # any other LLM error
    "abandoned",  # a stream the caller stopped reading (or was cancelled) before its end
]

#: The host label of an endpoint that names no base URL.
DEFAULT_HOST = "api.openai.com"


def endpoint_label(model: str, base_url: str | None) -> str:
    """``model@host[:port]`` for an endpoint (no credentials, path or query)."""
    host = urlsplit(base_url).netloc.rpartition("@")[2] if base_url else DEFAULT_HOST
    return f"{model}@{host or '?'}"


def outcome_of(error: LLMError) -> Outcome:
    """The outcome label of a failed call."""
    if isinstance(error, RateLimitError):
        return "rate_limited"
    if isinstance(error, LLMTimeoutError):
        return "timeout"
    if isinstance(error, LLMUnavailableError):
        return "unavailable"
    if isinstance(error, LLMBadRequestError):
        return "bad_request"
    if isinstance(error, LLMRequestError):
        return "refused"
    return "error"


class LLMRequestStats:
    """Monotonic counters ``(bot, endpoint, outcome) -> calls``; safe to read from another
    thread (a metrics scrape) while the event loop records."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, Outcome], int] = {}

    def record(self, bot_id: str, endpoint: str, outcome: Outcome) -> None:
        key = (bot_id, endpoint, outcome)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def snapshot(self) -> Mapping[tuple[str, str, Outcome], int]:
        """A copy of the counters."""
        with self._lock:
            return dict(self._counts)
