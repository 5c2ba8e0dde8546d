"""Tool servers for tests, on real loopback ports: an MCP server and an HTTP tool server.

``McpToolServer`` serves the ``mcp`` SDK's ``MCPServer`` (the former FastMCP) over streamable
HTTP at :attr:`~McpToolServer.url` (``http://127.0.0.1:PORT/mcp``) with the tools:

* ``add(a: int, b: int)`` -> the sum;
* ``slow(seconds: float)`` -> sleeps, then ``"done"``;
* ``fail()`` -> an MCP tool error (``isError``) with the text ``"the tool failed on purpose"``;
* ``write_note(text: str)`` -> appends ``text`` to :attr:`~McpToolServer.notes` (a side effect);
* ``lookup(key: str)`` -> the value of ``key`` in :data:`LOOKUP` (an error result if none).

``HttpToolServer`` serves, at :attr:`~HttpToolServer.url`:

* ``GET /weather/{city}`` -> ``{"city", "temperature", "query"}`` (JSON; ``query``: the query);
* ``GET /big`` -> a 1 MB body (``size`` query parameter: another size);
* ``GET /slow?seconds=S`` -> sleeps S seconds (default 5), then ``done``;
* ``GET /error`` -> 500 with the body ``upstream broke``;
* ``GET /redirect`` -> 302 to ``/weather/elsewhere``;
* ``POST /notes`` -> records the JSON body in :attr:`~HttpToolServer.notes`, answers ``{"stored"}``.

Both record every request's path and headers in ``requests`` (to assert that secret headers
arrive). Each runs uvicorn in a background thread (see :mod:`.server`): use it as a context
manager or call ``start()``/``stop()``, from sync or async tests; ``McpToolServer.restart()``
stops it and starts a fresh server (empty state) on the same port.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any, Self

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .server import Served, ThreadedServer

#: What the MCP server's ``lookup`` tool knows.
LOOKUP = {"capital-of-france": "Paris", "answer": "42"}
BIG_BODY_BYTES = 1_000_000


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]


class _Recorder:
    """Thread-safe lists the servers' apps append to and the tests read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._notes: list[Any] = []

    def request(self, entry: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(entry)

    def note(self, value: Any) -> None:
        with self._lock:
            self._notes.append(value)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def notes(self) -> list[Any]:
        with self._lock:
            return list(self._notes)


def _recording(app: ASGIApp, recorder: _Recorder) -> ASGIApp:
    """``app``, recording each HTTP request's method, path, query and headers first."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            query = scope.get("query_string", b"").decode("latin-1")
            recorder.request(RecordedRequest(scope["method"], scope["path"], query, headers))
        await app(scope, receive, send)

    return wrapped


class _Served(Served):
    """A recorded app served by a :class:`ThreadedServer`; subclasses build the app."""

    def __init__(self, *, port: int = 0, name: str) -> None:
        self._port = port
        self._name = name
        self._recorder = _Recorder()
        self._server: ThreadedServer | None = None
        self.port = port

    def _app(self, recorder: _Recorder) -> ASGIApp:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._recorder.requests

    @property
    def notes(self) -> list[Any]:
        return self._recorder.notes

    def start(self) -> Self:
        app = _recording(self._app(self._recorder), self._recorder)
        self._server = ThreadedServer(app, port=self.port, name=self._name).start()
        self.port = self._server.port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def restart(self) -> Self:
        """Stop, then serve a fresh app (empty state) on the same port."""
        self.stop()
        self._recorder = _Recorder()
        return self.start()


class McpToolServer(_Served):
    """A real MCP server (streamable HTTP) with the tools listed in the module's docstring."""

    def __init__(self, *, port: int = 0) -> None:
        super().__init__(port=port, name="mcp-tool-server")

    @property
    def url(self) -> str:
        """The MCP endpoint, ``http://127.0.0.1:PORT/mcp``."""
        return f"{self.base_url}/mcp"

    def _app(self, recorder: _Recorder) -> ASGIApp:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError

        server = MCPServer("kubebots-test-tools", log_level="WARNING")

        @server.tool()
        def add(a: int, b: int) -> int:
            """Add two integers."""
            return a + b

        @server.tool()
        async def slow(seconds: float) -> str:
            """Sleep, then answer done."""
            await asyncio.sleep(seconds)
            return "done"

        @server.tool()
        def fail() -> str:
            """Always fails."""
            raise ToolError("the tool failed on purpose")

        @server.tool()
        def write_note(text: str) -> str:
            """Store a note (a side effect)."""
            recorder.note(text)
            return f"stored note {len(recorder.notes)}"

        @server.tool()
        def lookup(key: str) -> str:
            """Look a key up."""
            if key not in LOOKUP:
                raise ToolError(f"no such key: {key}")
            return LOOKUP[key]

        return server.streamable_http_app()


class HttpToolServer(_Served):
    """An HTTP server with the endpoints listed in the module's docstring."""

    def __init__(self, *, port: int = 0) -> None:
        super().__init__(port=port, name="http-tool-server")

    @property
    def url(self) -> str:
        return self.base_url

    def _app(self, recorder: _Recorder) -> ASGIApp:
        async def weather(request: Request) -> Response:
            city = request.path_params["city"]
            query = dict(request.query_params)
            return JSONResponse({"city": city, "temperature": 21, "query": query})

        async def big(request: Request) -> Response:
            size = int(request.query_params.get("size", BIG_BODY_BYTES))
            return PlainTextResponse("x" * size)

        async def slow(request: Request) -> Response:
            await asyncio.sleep(float(request.query_params.get("seconds", "5")))
            return PlainTextResponse("done")

        async def error(request: Request) -> Response:
            return PlainTextResponse("upstream broke", status_code=500)

        async def redirect(request: Request) -> Response:
            return RedirectResponse("/weather/elsewhere", status_code=302)

        async def notes(request: Request) -> Response:
            recorder.note(await request.json())
            return JSONResponse({"stored": len(recorder.notes)})

        return Starlette(
            routes=[
                Route("/weather/{city}", weather),
                Route("/big", big),
                Route("/slow", slow),
                Route("/error", error),
                Route("/redirect", redirect),
                Route("/notes", notes, methods=["POST"]),
            ]
        )
