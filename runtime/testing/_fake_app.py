"""The FastAPI app behind :class:`~kubebots.runtime.testing.fake_openai.FakeOpenAIServer`."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

if TYPE_CHECKING:
    from .fake_openai import FakeOpenAIServer, Fault

_WORD = re.compile(r"\S+\s*|\s+")


class DroppedConnectionError(Exception):
    """Raised mid-stream to make the server drop the connection (an injected fault)."""


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def reply_for(model: str, messages: list[dict[str, Any]]) -> str:
    """``f"[{model}] {first system message or '-'} | {last user message}"``."""
    system = next((_text(m.get("content")) for m in messages if m.get("role") == "system"), "-")
    user = next(
        (_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
    )
    return f"[{model}] {system} | {user}"


def _error(status: int, message: str, retry_after: float | None = None) -> JSONResponse:
    kind = {401: "invalid_request_error", 429: "rate_limit_error"}.get(status, "api_error")
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else None
    return JSONResponse(body, status_code=status, headers=headers)


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data)}\n\n"


def _head(kind: str, model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-fake-{time.time_ns()}",
        "object": kind,
        "created": int(time.time()),
        "model": model,
    }


class _FakeApp:
    """Request handlers; settings, faults and the stop flag are read from ``server`` each time."""

    def __init__(self, server: FakeOpenAIServer) -> None:
        self.server = server

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the server is stopping."""
        if seconds > 0:
            await asyncio.to_thread(self.server.stopping.wait, seconds)

    async def admit(
        self, request: Request, body: Any, *, streaming: bool
    ) -> Response | Fault | None:
        """Record the request, check the key, apply the latency and a fault's hang/status."""
        authorization = request.headers.get("authorization")
        self.server.record(
            {"method": request.method, "path": request.url.path, "body": body}
            | {"authorization": authorization, "headers": dict(request.headers)}
        )
        if self.server.api_key is not None and authorization != f"Bearer {self.server.api_key}":
            presented = (authorization or "").removeprefix("Bearer ")
            return _error(401, f"Incorrect API key provided: {presented}.")
        fault = self.server.take_fault(streaming=streaming)
        await self.pause(self.server.latency)
        if fault is not None and fault.hang is not None:
            await self.pause(fault.hang)
        if fault is not None and fault.status is not None:
            message = fault.message or f"injected HTTP {fault.status}"
            return _error(fault.status, message, fault.retry_after)
        return fault

    async def chunks(
        self, model: str, reply: str, fault: Fault | None, usage: dict[str, int] | None
    ) -> AsyncIterator[str]:
        """The SSE events of a streamed reply, with a mid-stream fault if one applies."""
        head = _head("chat.completion.chunk", model)

        def chunk(delta: dict[str, str], finish: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            return _sse(head | {"choices": [choice]})

        yield chunk({"role": "assistant", "content": ""})
        error_after = fault.error_after if fault is not None else None
        drop_after = fault.drop_after if fault is not None else None
        cut = error_after if error_after is not None else drop_after
        for word in _WORD.findall(reply)[:cut]:
            await self.pause(self.server.chunk_delay)
            yield chunk({"content": word})
        if error_after is not None:
            message = (fault.message if fault else None) or "injected error mid-stream"
            yield _sse({"error": {"message": message, "type": "server_error", "code": None}})
            return
        if drop_after is not None:
            raise DroppedConnectionError("injected connection drop mid-stream")
        yield chunk({}, "stop")
        if usage is not None:
            yield _sse(head | {"choices": [], "usage": usage})
        yield "data: [DONE]\n\n"

    async def chat_completions(self, request: Request) -> Response:
        """``POST /v1/chat/completions``, streamed or not."""
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
        streaming = isinstance(body, dict) and body.get("stream") is True
        outcome = await self.admit(request, body, streaming=streaming)
        if isinstance(outcome, Response):
            return outcome
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "the body must be a JSON object with a messages list")
        model = str(body.get("model", ""))
        messages = [m for m in body["messages"] if isinstance(m, dict)]
        reply = reply_for(model, messages)
        prompt = sum(len(_text(m.get("content")).split()) for m in messages)
        completion = len(reply.split())
        usage = {"prompt_tokens": prompt, "completion_tokens": completion}
        usage["total_tokens"] = prompt + completion
        if streaming:
            include_usage = (body.get("stream_options") or {}).get("include_usage")
            events = self.chunks(model, reply, outcome, usage if include_usage else None)
            return StreamingResponse(events, media_type="text/event-stream")
        message = {"role": "assistant", "content": reply}
        choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
        return JSONResponse(_head("chat.completion", model) | {"choices": [choice], "usage": usage})

    async def models(self, request: Request) -> Response:
        """``GET /v1/models``."""
        outcome = await self.admit(request, None, streaming=False)
        if isinstance(outcome, Response):
            return outcome
        entry = {"id": "fake-model", "object": "model", "created": 0, "owned_by": "kubebots"}
        return JSONResponse({"object": "list", "data": [entry]})


class _DropConnections:
    """Outermost ASGI layer: an injected drop ends the app mid-body, so uvicorn closes the
    connection (it logs one line) instead of logging the exception's traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except DroppedConnectionError:
            return


def build_app(server: FakeOpenAIServer) -> ASGIApp:
    """The ASGI app serving ``server``'s endpoints."""
    handlers = _FakeApp(server)
    app = FastAPI(title="fake-openai", openapi_url=None, docs_url=None, redoc_url=None)
    app.add_api_route("/v1/chat/completions", handlers.chat_completions, methods=["POST"])
    app.add_api_route("/v1/models", handlers.models, methods=["GET"])
    return _DropConnections(app)
