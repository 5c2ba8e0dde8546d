"""Test helpers shipped with the runtime: an OpenAI-compatible fake server."""

from __future__ import annotations

from .fake_openai import FakeOpenAIServer, Fault

__all__ = ["FakeOpenAIServer", "Fault"]
