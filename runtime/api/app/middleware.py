"""Request context as plain ASGI middleware (cheaper than BaseHTTPMiddleware).

Per request: a request id (``X-Request-ID`` kept when sane, else generated, echoed back), the
body-size limit (413 in the error format), Prometheus metrics by route template, and one
structured access-log line, and one server span (:mod:`~kubebots.runtime.tracing`) named by the
route template, a child of the caller's W3C ``traceparent`` when it sends one. Message content
is never logged.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from typing import Any

from opentelemetry.trace import Span
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ... import tracing
from ..exception_handlers import format_error
from .metrics import Metrics
from .openai_errors import is_v1, openai_error

#: The response header naming the Bot generation that answered a chat turn (or failed it).
GENERATION_HEADER = "X-Kubebots-Generation"
_GENERATION_HEADER_BYTES = GENERATION_HEADER.lower().encode()

log = logging.getLogger("kubebots.runtime.api.access")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class _Sent:
    """What went out for one request."""

    __slots__ = ("refused", "status")

    def __init__(self) -> None:
        self.status = 500
        self.refused = False


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        # bounded: routes are templates (or "unmatched"), methods and statuses a few each
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given, declared, traceparent, tracestate = "", b"", "", ""
        for key, value in scope["headers"]:  # one pass: the headers we need
            if key == b"x-request-id":
                given = value.decode("latin-1")
            elif key == b"content-length":
                declared = value
            elif key == b"traceparent":
                traceparent = value.decode("latin-1")
            elif key == b"tracestate":
                tracestate = value.decode("latin-1")
        request_id = given if _SAFE_ID.match(given) else secrets.token_hex(16)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        sent = _Sent()

        async def send_with_id(message: Message) -> None:
            if sent.refused:
                return  # we already answered 413; what the app says next goes nowhere
            if message["type"] == "http.response.start":
                sent.status = message["status"]
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                # a chat turn's generation (its route marks it), on its answer and its errors
                generation = scope["state"].get("generation")
                if generation is not None:
                    headers.append((_GENERATION_HEADER_BYTES, str(generation).encode()))
                message["headers"] = headers
            await send(message)

        try:
            length = int(declared or 0)
        except ValueError:
            length = 0
        method = scope.get("method", "")
        parent = tracing.remote_parent(traceparent, tracestate)
        with tracing.span(method, kind="server", parent=parent) as span:
            try:
                v1 = is_v1(scope.get("path", ""))
                if length > self.max_body_bytes:
                    await self._too_large(send_with_id, request_id, v1=v1)
                    return
                limited = self._limited(receive, send_with_id, request_id, sent, v1=v1)
                await self.app(scope, limited, send_with_id)
            finally:
                seconds = time.perf_counter() - started
                route = self._observe(scope, sent.status, seconds, request_id)
                if span.is_recording():
                    _served(span, method, route, sent.status, request_id)

    def _limited(
        self, receive: Receive, send: Send, request_id: str, sent: _Sent, *, v1: bool
    ) -> Receive:
        """Counts body bytes; past the limit it answers 413 itself and tells the app the client
        left (a chunked body has no Content-Length to check up front)."""
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            if sent.refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    await self._too_large(send, request_id, v1=v1)
                    sent.refused = True
                    return {"type": "http.disconnect"}
            return message

        return limited

    async def _too_large(self, send: Send, request_id: str, *, v1: bool) -> None:
        """The 413, in the guide's error format, or OpenAI's under ``/v1``."""
        body: dict[str, Any] = format_error(
            "PayloadTooLargeError",
            f"request body exceeds {self.max_body_bytes} bytes",
            {"max_body_bytes": self.max_body_bytes, "request_id": request_id},
        )
        if v1:
            body = openai_error(413, body)[1]
        raw = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(raw)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": raw})

    def _series(self, method: str, route: str, status: int) -> tuple[Any, Any]:
        """The metric children of one (method, route, status): ``labels()`` looked up once."""
        key = (method, route, status)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = (
                self.metrics.requests.labels(method=method, route=route, status=str(status)),
                self.metrics.latency.labels(method=method, route=route),
            )
        return found

    def _observe(self, scope: Scope, status: int, seconds: float, request_id: str) -> str:
        """Count the request, log its line; returns its route template."""
        route: Any = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "")
        counter, histogram = self._series(method, template, status)
        counter.inc()
        histogram.observe(seconds)
        state = scope.get("state", {})
        log.info(
            "request",
            extra={
                "request_id": request_id,
                "method": method,
                "route": template,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "client_id": state.get("client_id"),
            },
        )
        return template


def _served(span: Span, method: str, route: str, status: int, request_id: str) -> None:
    """The server span's name and attributes (HTTP semantic conventions): an answer >= 500 is
    a failure."""
    span.update_name(f"{method} {route}")
    span.set_attribute("http.request.method", method)
    span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    span.set_attribute("kubebots.request_id", request_id)
    if status >= 500:
        tracing.failed(span, str(status))
