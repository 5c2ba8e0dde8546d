"""Spans collected in memory: an SDK provider given to :mod:`kubebots.runtime.tracing`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kubebots.runtime.tracing import use_provider


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every kubebots span ended during the test (each exported as it ends)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    restore = use_provider(provider)
    try:
        yield exporter
    finally:
        restore()
        provider.shutdown()
