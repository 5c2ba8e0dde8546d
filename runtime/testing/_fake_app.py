"""The FastAPI app behind :class:`~kubebots.runtime.testing.fake_openai.FakeOpenAIServer`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..llm.echo import split_words
from ._fake_reply import FakeReply, prompt_tokens, reply_for

if TYPE_CHECKING:
    from .fake_openai import FakeOpenAIServer, Fault

#: Streamed tool call arguments come in pieces of this many characters (as OpenAI's do).
ARGUMENT_PIECE = 8


def _pieces(text: str) -> list[str]:
    """``text`` in pieces of :data:`ARGUMENT_PIECE` characters."""
    return [text[i : i + ARGUMENT_PIECE] for i in range(0, len(text), ARGUMENT_PIECE)]


class DroppedConnectionError(Exception):
    """Raised mid-stream to make the server drop the connection (an injected fault)."""


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
        self, model: str, reply: FakeReply, fault: Fault | None, usage: dict[str, int] | None
    ) -> AsyncIterator[str]:
        """The SSE events of a streamed reply, with a mid-stream fault if one applies: a role
        chunk, one chunk per word, per tool call a chunk with its id and name then its
        arguments in pieces, a chunk with the finish reason, the usage chunk if asked for."""
        head = _head("chat.completion.chunk", model)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            return _sse(head | {"choices": [choice]})

        pieces: list[dict[str, Any]] = [{"content": w} for w in split_words(reply.content or "")]
        for index, call in enumerate(reply.tool_calls):
            function = {"name": call.name, "arguments": ""}
            first = {"index": index, "id": call.id, "type": "function", "function": function}
            pieces.append({"tool_calls": [first]})
            pieces.extend(
                {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                for piece in _pieces(call.arguments)
            )
        yield chunk({"role": "assistant", "content": "" if reply.content is not None else None})
        error_after = fault.error_after if fault is not None else None
        drop_after = fault.drop_after if fault is not None else None
        cut = error_after if error_after is not None else drop_after
        for piece in pieces[:cut]:
            await self.pause(self.server.chunk_delay)
            yield chunk(piece)
        if error_after is not None:
            message = (fault.message if fault else None) or "injected error mid-stream"
            yield _sse({"error": {"message": message, "type": "server_error", "code": None}})
            return
        if drop_after is not None:
            raise DroppedConnectionError("injected connection drop mid-stream")
        yield chunk({}, reply.finish_reason)
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
        failing = self.server.take_share_failure(model)
        if failing is not None:
            return _error(failing, f"injected HTTP {failing} (a share of {model}'s calls)")
        reply = reply_for(body, self.server.take_script())
        prompt, completion = prompt_tokens(body), reply.completion_tokens()
        usage = {"prompt_tokens": prompt, "completion_tokens": completion}
        usage["total_tokens"] = prompt + completion
        if streaming:
            include_usage = (body.get("stream_options") or {}).get("include_usage")
            events = self.chunks(model, reply, outcome, usage if include_usage else None)
            return StreamingResponse(events, media_type="text/event-stream")
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in reply.tool_calls
            ]
        choice = {"index": 0, "message": message, "finish_reason": reply.finish_reason}
        choice["logprobs"] = None
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
