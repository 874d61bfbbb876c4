"""JSON logs, one object per line, so ``jq`` and log shippers can follow one order through the pipeline.

Every line carries ``service`` and ``level``; lines about one order carry its ``event_id`` (the
order_id), passed as ``log.info(..., extra={"event_id": ...})``.
"""

from __future__ import annotations

import json
import logging
import sys
import time

_EXTRA_FIELDS = ("event_id", "topic", "partition", "offset", "trace_id", "count", "error")


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object with service, level, logger, message and known extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _EXTRA_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(service: str, level: str = "INFO", stream=None) -> logging.Logger:
    """Route the root logger to one JSON handler for ``service`` (idempotent: replaces earlier handlers)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("kstream_lab.kafka.rdkafka").setLevel("WARNING")
    logging.getLogger("httpx").setLevel("WARNING")
    return logging.getLogger(f"kstream_lab.{service}")
