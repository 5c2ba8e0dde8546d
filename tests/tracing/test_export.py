"""Export at the process edges: ``configure_tracing`` with the standard ``OTEL_*`` variables
sends spans over OTLP/HTTP (the real exporter) to a collector the test runs on loopback; and
``kubebots serve`` does so for a chat turn when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from kubebots.runtime import tracing
from kubebots.runtime.tracing import configure_tracing, traces_endpoint

from ..cli.support import free_port, kubebots_exe


@dataclass(frozen=True)
class Received:
    """One POST the collector got."""

    path: str
    headers: dict[str, str]
    body: bytes

    def spans(self) -> list[tuple[dict[str, Any], str, dict[str, Any]]]:
        """(resource attributes, span name, span attributes) of every span sent."""
        request = ExportTraceServiceRequest.FromString(self.body)
        found = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append((resource, span.name, _attributes(span.attributes)))
        return found


def _attributes(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        value = pair.value
        kind = value.WhichOneof("value")
        out[pair.key] = getattr(value, kind) if kind else None
    return out


class Collector:
    """An OTLP/HTTP receiver on loopback (``http.server``): records each POST, answers 200."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                collector.received.append(Received(self.path, headers, body))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return  # no line per request on the test's stderr

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Collector:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def spans(self) -> list[tuple[dict[str, Any], str, dict[str, Any]]]:
        return [span for received in self.received for span in received.spans()]


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as running:
        yield running


def test_spans_are_exported_over_otlp_http_when_an_endpoint_is_set(collector: Collector) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url + "/",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-collector-token=tok%20en",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test,service.namespace=kubebots",
    }
    shutdown = configure_tracing(env, service_name="kubebots-runtime")
    try:
        with tracing.span("kubebots.bot.build", {"kubebots.bot.id": "default:echo"}) as span:
            assert span.is_recording()
    finally:
        shutdown()  # sends what the batch holds
    [received] = collector.received
    assert received.path == "/v1/traces"
    assert received.headers["content-type"] == "application/x-protobuf"
    assert received.headers["x-collector-token"] == "tok en"
    [(resource, name, attributes)] = received.spans()
    assert name == "kubebots.bot.build" and attributes == {"kubebots.bot.id": "default:echo"}
    assert resource["service.name"] == "kubebots-runtime"
    assert resource["deployment.environment"] == "test"
    assert resource["service.namespace"] == "kubebots"
    assert resource["telemetry.sdk.language"] == "python"
    with tracing.span("after") as after:  # shut down: the previous (no-op) provider is back
        assert not after.is_recording()


def test_the_traces_endpoint_and_service_name_variables_win(collector: Collector) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9/unused",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.url + "/custom/traces",
        "OTEL_SERVICE_NAME": "bots-eu",
        "OTEL_RESOURCE_ATTRIBUTES": "service.name=ignored",
    }
    assert traces_endpoint(env) == collector.url + "/custom/traces"
    shutdown = configure_tracing(env, service_name="kubebots-operator")
    try:
        with tracing.span("kubebots.operator.reconcile"):
            pass
    finally:
        shutdown()
    [received] = collector.received
    assert received.path == "/custom/traces"
    [(resource, name, _)] = received.spans()
    assert resource["service.name"] == "bots-eu" and name == "kubebots.operator.reconcile"


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": ""},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SDK_DISABLED": "true"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_TRACES_EXPORTER": "none"},
    ],
)
def test_nothing_is_set_up_without_an_endpoint_or_when_disabled(env: dict[str, str]) -> None:
    shutdown = configure_tracing(env, service_name="kubebots-runtime")
    try:
        with tracing.span("unseen") as span:
            assert not span.is_recording()
            assert not span.get_span_context().is_valid
    finally:
        shutdown()


def test_the_sampler_variables_are_read_from_the_env_given(collector: Collector) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_TRACES_SAMPLER": "always_off"}
    shutdown = configure_tracing(env, service_name="kubebots-runtime")
    try:
        with tracing.span("sampled-out") as span:
            assert not span.is_recording()
            assert span.get_span_context().is_valid  # still propagated, just not recorded
    finally:
        shutdown()
    assert collector.spans() == []


def test_kubebots_serve_exports_a_chat_turn_when_the_endpoint_is_set(
    tmp_path: Path, collector: Collector
) -> None:
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("KUBEBOTS_", "OPENAI_", "OTEL_"))
    }
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.url
    proc = subprocess.Popen(
        [kubebots_exe(), "serve", "--port", str(port), "--llm", "echo"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        chat = httpx.post(
            f"{base}/bots/default:support/chat",
            json={"message": "private-words-42", "conversation_id": "c1"},
            timeout=60,
        )
        assert chat.status_code == 200, chat.text
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"spans are exported over OTLP/HTTP to {collector.url}/v1/traces" in err
    spans = collector.spans()
    routes = [(r, a) for r, n, a in spans if n == "POST /bots/{bot_id}/chat"]
    assert len(routes) == 1, [n for _, n, _ in spans]
    resource, attributes = routes[0]
    assert resource["service.name"] == "kubebots-runtime"
    assert attributes["http.response.status_code"] == 200
    names = {n for _, n, _ in spans}
    assert {"kubebots.bot.build", "chat echo", "recent conversation"} <= names, names
    assert all(b"private-words-42" not in r.body for r in collector.received)


def wait_ready(base: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.communicate()[1])
        try:
            ready = httpx.get(f"{base}/readyz").status_code == 200
        except httpx.TransportError:
            ready = False  # not listening yet
        if ready:
            return
        time.sleep(0.1)
    raise AssertionError("kubebots serve never became ready")
