"""OpenTelemetry tracing: the spans kubebots makes, and their export at the process edges.

Library code uses the OpenTelemetry API only, through :func:`span` and :func:`start_span`
(tracer :data:`SCOPE`). Spans carry names, ids, counts and outcomes, never a message's text, a
tool's arguments or results, or a secret; an error sets the span's status to ``ERROR`` with the
exception's type only (no message, no stack trace).

The spans go to the process's tracer provider, held here: OpenTelemetry's global provider
unless :func:`use_provider` (the tests: an SDK provider with an in-memory exporter) or
:func:`configure_tracing` (``kubebots serve`` and ``kubebots operator``, from the standard
``OTEL_*`` variables the edge passes in) installed one. The global one is a no-op unless an
embedding application set its own, so with nothing configured a span costs a few microseconds
and exports nothing. kubebots never sets the global provider: libraries with telemetry of their
own (FastAPI's, the MCP SDK's) stay off unless the application turns them on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import unquote, urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.sampling import Sampler

log = logging.getLogger("kubebots.tracing")

#: What :func:`span` returns: a ``with`` block whose value is the span.
SpanBlock = AbstractContextManager[Span]

#: The instrumentation scope of every kubebots span.
SCOPE: Final = "kubebots"
#: Seconds an OTLP export may take when ``OTEL_EXPORTER_OTLP_TIMEOUT`` does not say (as the
#: Python SDK reads that variable: seconds).
DEFAULT_EXPORT_TIMEOUT: Final = 10.0
Kind = Literal["internal", "server", "client"]
_KINDS: Final = {
    "internal": SpanKind.INTERNAL,
    "server": SpanKind.SERVER,
    "client": SpanKind.CLIENT,
}
_PROPAGATOR: Final = TraceContextTextMapPropagator()


class _ProcessTracing:
    """The process's tracer provider (``None``: OpenTelemetry's global one) and its tracer.

    The one process-wide holder (as OpenTelemetry's own global is): a span is made deep in a
    turn, where no provider is passed; :func:`use_provider` swaps what it holds, which
    OpenTelemetry's global allows only once per process."""

    __slots__ = ("provider", "tracer")

    def __init__(self) -> None:
        self.provider: TracerProvider | None = None
        self.tracer: Tracer = trace.get_tracer(SCOPE)  # follows the global provider

    def use(self, provider: TracerProvider | None) -> None:
        self.provider = provider
        self.tracer = trace.get_tracer(SCOPE, tracer_provider=provider)


_PROCESS: Final = _ProcessTracing()


def tracer() -> Tracer:
    """The tracer of every kubebots span (the process's provider's)."""
    return _PROCESS.tracer


def use_provider(provider: TracerProvider | None) -> Callable[[], None]:
    """Send kubebots's spans to ``provider`` (``None``: OpenTelemetry's global provider);
    returns the function that puts the previous provider back."""
    previous = _PROCESS.provider
    _PROCESS.use(provider)
    return lambda: _PROCESS.use(previous)


@contextmanager
def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: Kind = "internal",
    parent: Context | None = None,
) -> Iterator[Span]:
    """A span current in the block (its children nest under it); an exception escaping the
    block (not a cancellation) marks it failed (:func:`failed`). Not for a block that spans an
    async generator's ``yield``: use :func:`start_span` there."""
    current = _PROCESS.tracer.start_span(
        name, context=parent, kind=_KINDS[kind], attributes=attributes
    )
    if not current.get_span_context().is_valid:
        yield current  # the no-op tracer's: nothing to make current, nothing to end
        return
    with trace.use_span(
        current, end_on_exit=True, record_exception=False, set_status_on_exception=False
    ):
        try:
            yield current
        except Exception as exc:
            failed(current, exc)
            raise


def start_span(
    name: str, attributes: Mapping[str, Any] | None = None, *, kind: Kind = "internal"
) -> Span:
    """A span under the current one that is not made current (the caller ends it): safe across
    an async generator's ``yield``, where a context attached would leak to the consumer."""
    return _PROCESS.tracer.start_span(name, kind=_KINDS[kind], attributes=attributes)


def failed(current: Span, error: BaseException | str) -> None:
    """Mark ``current`` failed: status ``ERROR`` and ``error.type``, the exception's type name
    (or ``error``, a reason code): never its message, which may quote what a user sent."""
    kind = error if isinstance(error, str) else type(error).__name__
    current.set_attribute("error.type", kind)
    current.set_status(Status(StatusCode.ERROR, kind))


def current_span() -> Span:
    """The span current in this context (a non-recording one when there is none)."""
    return trace.get_current_span()


def remote_parent(traceparent: str, tracestate: str = "") -> Context | None:
    """The caller's span context from W3C ``traceparent``/``tracestate`` headers, or ``None``
    when there is none (or it is malformed)."""
    if not traceparent:
        return None
    carrier = {"traceparent": traceparent, "tracestate": tracestate}
    context = _PROPAGATOR.extract(carrier)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


# -- the process edges --------------------------------------------------------------------------


def traces_endpoint(env: Mapping[str, str]) -> str | None:
    """Where spans are exported (OTLP/HTTP), from ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (as
    is) or ``OTEL_EXPORTER_OTLP_ENDPOINT`` (plus ``/v1/traces``); ``None``: not configured."""
    specific = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if specific:
        return specific
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return base.rstrip("/") + "/v1/traces" if base else None


def configure_tracing(env: Mapping[str, str], *, service_name: str) -> Callable[[], None]:
    """Export spans over OTLP/HTTP when ``env`` names an endpoint (:func:`traces_endpoint`),
    unless ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``; nothing otherwise.

    Read from ``env``: ``OTEL_SERVICE_NAME`` (default ``service_name``),
    ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER(_ARG)`` and, general or ``TRACES_``,
    the OTLP exporter's ``HEADERS``, ``TIMEOUT`` (seconds) and ``COMPRESSION``. Spans are sent
    in batches by a background thread. Returns the shutdown: it sends what is queued (within
    the export timeout), stops the exporter and puts the previous provider back."""
    endpoint = traces_endpoint(env)
    disabled = env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    exporters = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if endpoint is None or disabled or exporters == "none":
        return lambda: None
    if exporters != "otlp":
        log.warning("OTEL_TRACES_EXPORTER=%s: kubebots exports with otlp only", exporters)
    protocol = _otlp(env, "PROTOCOL") or "http/protobuf"
    if protocol != "http/protobuf":
        log.warning("OTLP protocol %s is not supported: spans are sent as http/protobuf", protocol)

    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.util.re import parse_env_headers

    named = _otlp(env, "COMPRESSION") or "none"
    try:
        compression = Compression(named)
    except ValueError:
        log.warning("OTLP compression %s is not known: spans are sent uncompressed", named)
        compression = Compression.NoCompression
    exporter = OTLPSpanExporter(
        endpoint=endpoint,
        headers=parse_env_headers(_otlp(env, "HEADERS"), liberal=True),
        timeout=_seconds(_otlp(env, "TIMEOUT")),
        compression=compression,
    )
    provider = SdkTracerProvider(sampler=_sampler(env), resource=_resource(env, service_name))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    restore = use_provider(provider)
    log.info("tracing: spans are exported over OTLP/HTTP to %s", _shown(endpoint))

    def shutdown() -> None:
        restore()
        provider.shutdown()

    return shutdown


def _otlp(env: Mapping[str, str], name: str) -> str:
    """An OTLP exporter setting: ``OTEL_EXPORTER_OTLP_TRACES_<name>``, else the general one."""
    value = env.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or env.get(f"OTEL_EXPORTER_OTLP_{name}")
    return (value or "").strip()


def _seconds(value: str) -> float:
    try:
        return float(value) if value else DEFAULT_EXPORT_TIMEOUT
    except ValueError:
        return DEFAULT_EXPORT_TIMEOUT


def _resource(env: Mapping[str, str], service_name: str) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.version import __version__ as sdk_version

    attributes: dict[str, str] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": sdk_version,
    }
    for pair in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = pair.partition("=")
        if sep and key.strip():
            attributes[key.strip()] = unquote(value.strip())
    named = env.get("OTEL_SERVICE_NAME", "").strip()
    attributes["service.name"] = named or attributes.get("service.name") or service_name
    return Resource(attributes)


def _sampler(env: Mapping[str, str]) -> Sampler:
    """``OTEL_TRACES_SAMPLER`` (and its ``_ARG``, a ratio), as the SDK names them; default:
    ``parentbased_always_on``."""
    from opentelemetry.sdk.trace import sampling

    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
    try:
        ratio = float(env.get("OTEL_TRACES_SAMPLER_ARG", "") or 1.0)
    except ValueError:
        ratio = 1.0
    samplers: dict[str, Callable[[], Sampler]] = {
        "always_on": lambda: sampling.ALWAYS_ON,
        "always_off": lambda: sampling.ALWAYS_OFF,
        "traceidratio": lambda: sampling.TraceIdRatioBased(ratio),
        "parentbased_always_on": lambda: sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": lambda: sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": lambda: sampling.ParentBasedTraceIdRatio(ratio),
    }
    if name not in samplers:
        log.warning("OTEL_TRACES_SAMPLER=%s is not known: parentbased_always_on is used", name)
        name = "parentbased_always_on"
    return samplers[name]()


def _shown(url: str) -> str:
    """``url`` without credentials or query, to log."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"
