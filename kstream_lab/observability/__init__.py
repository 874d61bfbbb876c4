"""Metrics, JSON logs and W3C trace context shared by every worker and app."""

from kstream_lab.observability.logs import setup_logging
from kstream_lab.observability.metrics import METRICS, start_metrics_server
from kstream_lab.observability.tracing import child_trace_headers, new_trace_headers, trace_id_of

__all__ = [
    "METRICS",
    "child_trace_headers",
    "new_trace_headers",
    "setup_logging",
    "start_metrics_server",
    "trace_id_of",
]
