"""W3C trace context carried in Kafka headers (``traceparent``), through the OpenTelemetry API.

Only the API is a dependency, so there is no SDK to create recording spans. We still propagate
real trace ids: the order service starts a trace, and each hop continues it with a new span id,
injecting through the standard propagator. With an SDK installed and configured, the same headers
join whatever tracing backend it exports to.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

Headers = list[tuple[str, bytes]]
_rng = random.SystemRandom()


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
    """Headers that start a new sampled trace (the order service does this once per order)."""
    ctx = SpanContext(
        trace_id=_rng.getrandbits(128) or 1,
        span_id=_rng.getrandbits(64) or 1,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return _headers_for(ctx)


def child_trace_headers(headers: Iterable[tuple[str, bytes | str | None]] | None) -> Headers:
    """Continue the trace in ``headers`` with a new span id; start a new trace if there is none."""
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
