"""A small OpenAI-compatible HTTP server for tests: real sockets, the real SSE wire format, faults.

``FakeOpenAIServer`` serves a FastAPI app with uvicorn on ``127.0.0.1`` (a free port by default)
in a background thread. Use it as a context manager or call :meth:`~FakeOpenAIServer.start` and
:meth:`~FakeOpenAIServer.stop`; point clients at :attr:`~FakeOpenAIServer.base_url`
(``http://127.0.0.1:PORT/v1``). Both methods block briefly, so they also work in async tests.

Endpoints:

* ``POST /v1/chat/completions`` -- ``object: "chat.completion"`` with ``usage``, the message's
  ``tool_calls`` and the ``finish_reason``; or with ``"stream": true`` server-sent events
  ``data: {chunk}\\n\\n`` ... ``data: [DONE]\\n\\n`` whose chunks
  (``object: "chat.completion.chunk"``) are: a role chunk, one ``delta.content`` chunk per word
  (trailing whitespace kept), per tool call a ``delta.tool_calls`` chunk with its ``index``,
  ``id``, ``type`` and ``function.name`` then chunks of ``function.arguments`` pieces, a chunk
  with the ``finish_reason``, and a usage chunk when ``stream_options.include_usage`` is set.
* ``GET /v1/models`` -- a list holding the model ``fake-model``.

The reply is deterministic: ``f"[{model}] {system} | {user}"`` where ``system`` is the content of
the first ``system`` message (``-`` if none) and ``user`` that of the last ``user`` message (empty
if none), plus ``" | tool NAME: RESULT"`` per tool result after it. ``tools`` and a last user
message of lines ``call NAME ARGS`` (one call per line: a parallel call; or a forcing
``tool_choice``) make tool calls instead, ``response_format`` JSON, ``max_tokens`` a cut reply
(``finish_reason: "length"``): see ``_fake_reply`` for the rules.
:meth:`~FakeOpenAIServer.script` sets the next replies outright. Usage counts whitespace-separated
words (prompt: all messages; completion: the reply).

With ``api_key`` set, requests without ``Authorization: Bearer <api_key>`` get a 401 whose message
echoes the presented key, as real upstreams partly do (to prove callers never leak it).
:meth:`~FakeOpenAIServer.inject` queues faults for the next requests;
:meth:`~FakeOpenAIServer.fail_share` makes a share of one model's calls fail, deterministically
(a flaky upstream); every request is recorded in :attr:`~FakeOpenAIServer.requests`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Self

from ._fake_app import build_app
from ._fake_reply import FakeCall, FakeReply
from .server import Served, ThreadedServer


@dataclass
class Fault:
    """One queued fault; see :meth:`FakeOpenAIServer.inject`."""

    status: int | None
    times: int
    retry_after: float | None = None
    hang: float | None = None
    error_after: int | None = None
    drop_after: int | None = None
    message: str | None = None

    @property
    def stream_only(self) -> bool:
        """Mid-stream faults apply to streamed requests only."""
        return self.error_after is not None or self.drop_after is not None


@dataclass
class FailShare:
    """A share of one model's calls that fail; see :meth:`FakeOpenAIServer.fail_share`."""

    share: Fraction
    status: int
    calls: int = 0  # the model's calls so far

    def take(self) -> bool:
        """Count one call; whether it fails. Call ``n`` (from 1) fails when it raises
        ``floor(n * share)``: exactly ``share`` of every run of calls, spread evenly."""
        self.calls += 1
        return math.floor(self.calls * self.share) > math.floor((self.calls - 1) * self.share)


class FakeOpenAIServer(Served):
    """An OpenAI-compatible server on a real port; thread-safe enough for tests."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        latency: float = 0.0,
        chunk_delay: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        self.latency = latency
        self.chunk_delay = chunk_delay
        self.host = host
        self._wanted_port = port
        self.port = port
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._faults: list[Fault] = []
        self._scripts: list[FakeReply] = []
        self._shares: dict[str, FailShare] = {}
        self.stopping = threading.Event()
        self._app = build_app(self)
        self._threaded: ThreadedServer | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ``http://HOST:PORT/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Recorded requests: ``method``, ``path``, ``body`` (JSON or None), ``authorization``."""
        with self._lock:
            return list(self._requests)

    def record(self, entry: dict[str, Any]) -> None:
        """Record one request (called by the app)."""
        with self._lock:
            self._requests.append(entry)

    def inject(
        self,
        status: int | None = None,
        *,
        times: int = 1,
        retry_after: float | None = None,
        hang: float | None = None,
        error_after: int | None = None,
        drop_after: int | None = None,
        message: str | None = None,
    ) -> None:
        """Queue a fault for the next ``times`` requests (faults apply in the order queued).

        ``status`` answers with that HTTP error (OpenAI error body; ``message`` overrides its
        text; ``retry_after`` seconds go in a ``Retry-After`` header). ``hang`` waits that many
        seconds first (then answers normally unless ``status`` is set). For streamed requests
        only: ``error_after=N`` sends N word chunks then an in-band ``{"error": ...}`` event;
        ``drop_after=N`` sends N word chunks then drops the connection.
        """
        if status is None and hang is None and error_after is None and drop_after is None:
            raise ValueError("inject needs status, hang, error_after or drop_after")
        if status is not None and not 400 <= status <= 599:
            raise ValueError("inject status must be an HTTP error status (400-599)")
        if times < 1:
            raise ValueError("inject times must be at least 1")
        fault = Fault(status, times, retry_after, hang, error_after, drop_after, message)
        with self._lock:
            self._faults.append(fault)

    def take_fault(self, *, streaming: bool) -> Fault | None:
        """Consume one use of the first queued fault that applies (called by the app)."""
        with self._lock:
            for fault in self._faults:
                if fault.stream_only and not streaming:
                    continue
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def fail_share(self, *, model: str, share: float, status: int = 500) -> None:
        """Make ``share`` (0..1) of the calls for ``model`` fail with HTTP ``status``, spread
        over them deterministically (0.3: the 4th, 7th and 10th of every 10, as
        :meth:`FailShare.take` says), until :meth:`reset` or another ``fail_share`` for the
        model (0: none fail). Queued :meth:`inject` faults apply first."""
        if not 0 <= share <= 1:
            raise ValueError("fail_share share must be between 0 and 1")
        if not 400 <= status <= 599:
            raise ValueError("fail_share status must be an HTTP error status (400-599)")
        with self._lock:
            self._shares[model] = FailShare(Fraction(share).limit_denominator(10_000), status)

    def take_share_failure(self, model: str) -> int | None:
        """Count a call for ``model``: the status it fails with, or None (called by the app)."""
        with self._lock:
            share = self._shares.get(model)
            return share.status if share is not None and share.take() else None

    def script(
        self,
        content: str | None = None,
        *,
        tool_calls: Sequence[tuple[str, str]] = (),
        finish_reason: str | None = None,
    ) -> None:
        """Queue the next reply (replies queue in order; each answers one chat completion):
        ``content`` (None: no content), ``tool_calls`` as ``(name, arguments JSON)`` pairs (ids
        ``call_fake_0``, ``call_fake_1``, ...), and the ``finish_reason`` (default:
        ``"tool_calls"`` with calls, else ``"stop"``)."""
        calls = tuple(FakeCall(f"call_fake_{i}", *call) for i, call in enumerate(tool_calls))
        finish = finish_reason or ("tool_calls" if calls else "stop")
        with self._lock:
            self._scripts.append(FakeReply(content, calls, finish))

    def take_script(self) -> FakeReply | None:
        """Consume the next scripted reply, if any (called by the app)."""
        with self._lock:
            return self._scripts.pop(0) if self._scripts else None

    def reset(self) -> None:
        """Forget recorded requests, queued faults, failing shares and scripted replies."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._shares.clear()
            self._scripts.clear()

    def start(self) -> Self:
        """Bind the port and serve in a background thread; returns once it accepts requests."""
        if self._threaded is not None:
            raise RuntimeError("the fake OpenAI server is already running")
        self.stopping.clear()
        server = ThreadedServer(
            self._app, host=self.host, port=self._wanted_port, lifespan="off", name="fake-openai"
        )
        self._threaded = server.start(timeout=10.0)
        self.port = server.port
        return self

    def stop(self) -> None:
        """Stop serving (pending waits end early), join the thread and release the port."""
        if self._threaded is None:
            return
        self.stopping.set()
        self._threaded.stop()
        self._threaded = None

    @property
    def running(self) -> bool:
        """Whether the server thread is alive."""
        return self._threaded is not None and self._threaded.running
