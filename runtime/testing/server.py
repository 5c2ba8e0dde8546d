"""Serve any ASGI app with real uvicorn on a loopback port, in a background thread.

For tests and benchmarks where the wire matters (the ``openai`` SDK, SSE, HTTP/1.1 keep-alive).
The app runs its own lifespan on the thread's event loop.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Literal, Self

import uvicorn
from starlette.types import ASGIApp


class Served:
    """``with`` for a test server: ``start()`` (returning the server) on entry, ``stop()`` on
    exit."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ThreadedServer(Served):
    """``with ThreadedServer(app) as server: httpx.get(server.url + "/healthz")``."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        lifespan: Literal["on", "off"] = "on",
        name: str = "asgi-server",
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._lifespan: Literal["on", "off"] = lifespan
        self._name = name
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def start(self, timeout: float = 30.0) -> Self:
        # IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets of that protocol (else +40 ms)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app, log_config=None, access_log=False, lifespan=self._lifespan, ws="none"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=self._name, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the ASGI server did not start (see the log)")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=30.0)
        if self._thread.is_alive():  # connections that would not close: stop without them
            self._server.force_exit = True
            self._thread.join(timeout=5.0)
        self._server = None
        self._thread = None
