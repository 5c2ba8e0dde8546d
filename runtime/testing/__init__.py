"""Test helpers shipped with the runtime: an OpenAI-compatible fake server, a threaded server."""

from __future__ import annotations

from .fake_openai import FakeOpenAIServer, Fault
from .server import ThreadedServer

__all__ = ["FakeOpenAIServer", "Fault", "ThreadedServer"]
