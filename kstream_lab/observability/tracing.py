"""W3C trace context carried in Kafka headers (``traceparent``), and the spans each process records.

Without tracing configured, only ids travel: the order service starts a trace, and each hop
continues it with a new span id, injecting through the standard propagator. With
``OTEL_TRACES_EXPORTER`` set (``otlp``, ``console``, ``file``; comma-separated), every process
configures the OpenTelemetry SDK at start (:func:`configure_tracing`) and the same calls record
spans: the order service's request and its produce, then one span per record for enrich, aggregate
(or late) and sink, each the child of the span whose context the record's ``traceparent`` carries.
A hop's span starts when its batch starts and ends when the record's output is handed on, so its
duration is the time the record spent in that hop's batch. ``otlp`` is the SDK's OTLP/HTTP exporter
(``OTEL_EXPORTER_OTLP_ENDPOINT`` and the other standard variables); ``file`` writes one JSON span a
line to ``KSTREAM_TRACES_FILE``.
"""

from __future__ import annotations

import atexit
import os
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from kstream_lab.errors import ConfigError
from kstream_lab.settings import Settings

Headers = list[tuple[str, bytes]]
ORIGIN = "kstream-origin-ms"  # when the order entered the pipeline (its POST arrived), epoch ms
_rng = random.SystemRandom()
_tracer: trace.Tracer | None = None  # set by configure_tracing: spans are recorded


def configure_tracing(service: str, settings: Settings) -> bool:
    """Set up the SDK for this process when ``OTEL_TRACES_EXPORTER`` names exporters; False when not."""
    global _tracer
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    names = [n for n in names if n != "none"]
    if not names:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service}
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in names:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        elif name == "file":
            if settings.traces_file is None:
                raise ConfigError(
                    "OTEL_TRACES_EXPORTER=file needs a file", hint="set KSTREAM_TRACES_FILE=/path/spans.jsonl"
                )
            out = settings.traces_file.open("a", buffering=1)
            line: Callable[[Any], str] = lambda span: span.to_json(indent=None) + "\n"  # noqa: E731
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=out, formatter=line)))
        else:
            raise ConfigError(
                f"OTEL_TRACES_EXPORTER: unknown exporter {name!r}", hint="use otlp, console, file or none"
            )
    trace.set_tracer_provider(provider)
    atexit.register(provider.shutdown)  # flushes the batching exporter on a clean exit
    _tracer = provider.get_tracer("kstream_lab")
    return True


def tracing_enabled() -> bool:
    return _tracer is not None


def traced_asgi(app: Any) -> Any:
    """``app`` with a server span around each HTTP request (itself when tracing is off); spans started
    while handling it (the order's produce) are its children."""
    if _tracer is None:
        return app
    tracer = _tracer

    async def wrapped(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        with tracer.start_as_current_span(f"{scope['method']} {scope['path']}", kind=SpanKind.SERVER):
            await app(scope, receive, send)

    return wrapped


def _carrier(headers: Iterable[tuple[str, bytes | str | None]] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in headers or ():
        if v is not None and k in ("traceparent", "tracestate"):
            out[k] = v.decode() if isinstance(v, bytes) else v
    return out


def _headers_for(span_context: SpanContext) -> Headers:
    carrier: dict[str, str] = {}
    inject(carrier, context=trace.set_span_in_context(NonRecordingSpan(span_context)))
    return [(k, v.encode()) for k, v in carrier.items()]


def new_trace_headers() -> Headers:
    """Headers that start a new sampled trace (the order service does this once per order); with
    tracing on, those of a recorded produce span, the child of the current request's span."""
    if _tracer is not None:
        span = _tracer.start_span("produce order", kind=SpanKind.PRODUCER)
        span.end()
        return _headers_for(span.get_span_context())
    ctx = SpanContext(
        trace_id=_rng.getrandbits(128) or 1,
        span_id=_rng.getrandbits(64) or 1,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return _headers_for(ctx)


def origin_headers(origin_ms: int) -> Headers:
    """The header that lets the last hop measure end-to-end latency (``kstream_end_to_end_seconds``):
    the order service sets it, every hop's :func:`child_trace_headers` carries it on."""
    return [(ORIGIN, str(origin_ms).encode())]


def origin_ms(headers: Iterable[tuple[str, bytes | str | None]] | None) -> int | None:
    """The ``kstream-origin-ms`` header's value, None when absent or not a number."""
    for k, v in headers or ():
        if k == ORIGIN and v is not None:
            try:
                return int(v)
            except ValueError:
                return None
    return None


def child_trace_headers(
    headers: Iterable[tuple[str, bytes | str | None]] | None, span: str | None = None, start_ns: int | None = None
) -> Headers:
    """Continue the trace in ``headers`` with a new span id; start a new trace if there is none.

    With tracing on and ``span`` named, the new span is recorded: from ``start_ns`` (the batch's
    start) to now. The origin header (:func:`origin_headers`) travels on unchanged."""
    headers = list(headers or ())
    origin = origin_ms(headers)
    child = _child_trace(headers, span, start_ns)
    return child if origin is None else child + origin_headers(origin)


def _child_trace(headers: list[tuple[str, bytes | str | None]], span: str | None, start_ns: int | None) -> Headers:
    if _tracer is not None and span is not None:
        recorded = _tracer.start_span(span, context=extract(_carrier(headers)), start_time=start_ns)
        recorded.end()
        return _headers_for(recorded.get_span_context())
    parent = trace.get_current_span(extract(_carrier(headers))).get_span_context()
    if not parent.is_valid:
        return new_trace_headers()
    ctx = SpanContext(
        trace_id=parent.trace_id,
        span_id=_rng.getrandbits(64) or 1,
        is_remote=False,
        trace_flags=parent.trace_flags,
        trace_state=parent.trace_state,
    )
    return _headers_for(ctx)


def trace_id_of(headers: Iterable[tuple[str, bytes | str | None]] | None) -> str | None:
    """The 32-hex trace id in ``headers``, or None."""
    ctx = trace.get_current_span(extract(_carrier(headers))).get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None


def record_spans(name: str, headers: Iterable[Iterable[tuple[str, bytes | str | None]] | None], start_ns: int) -> None:
    """One recorded span per record, child of its ``traceparent``, from ``start_ns`` to now (the sink's
    write and commit); nothing when tracing is off."""
    if _tracer is None:
        return
    end = time.time_ns()
    for h in headers:
        _tracer.start_span(name, context=extract(_carrier(h)), start_time=start_ns).end(end_time=end)
