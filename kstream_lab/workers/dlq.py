"""Dead letters (docs/semantics.md §2): the original key and bytes plus headers saying what went wrong.

Any worker sends a record it cannot handle here instead of stalling its partition; the headers make
every dead letter findable at its source (topic/partition/offset) and explain the failure.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)
HEADER_NAMES = (
    "error.class",
    "error.reason",
    "error.message",
    "source.topic",
    "source.partition",
    "source.offset",
    "attempts",
    "failed.at",
)


def dlq_headers(
    exc: BaseException, *, topic: str, partition: int, offset: int, attempts: int = 1, failed_at_ms: int | None = None
) -> list[tuple[str, bytes]]:
    """The DLQ headers for a record from ``topic[partition]@offset`` that failed with ``exc``.

    ``error.reason`` is the failure's stable name (RecordError.reason, e.g. ``unknown_schema_id``),
    for counting and triage by kind; ``error.message`` is the sentence naming field and record.
    """
    failed_at = failed_at_ms if failed_at_ms is not None else int(time.time() * 1000)
    message = getattr(exc, "message", None) or str(exc)
    reason = getattr(exc, "reason", None) or type(exc).__name__
    return [
        ("error.class", type(exc).__name__.encode()),
        ("error.reason", reason.encode()),
        ("error.message", message[:1000].encode()),
        ("source.topic", topic.encode()),
        ("source.partition", str(partition).encode()),
        ("source.offset", str(offset).encode()),
        ("attempts", str(attempts).encode()),
        ("failed.at", str(failed_at).encode()),
    ]


def send_to_dlq(out: Any, dlq_topic: str, message: Any, exc: BaseException, *, attempts: int = 1) -> None:
    """Send ``message`` unchanged (key, value, partition) to ``dlq_topic`` through a transactional Output."""
    headers = dlq_headers(
        exc, topic=message.topic(), partition=message.partition(), offset=message.offset(), attempts=attempts
    )
    headers += [(k, v) for k, v in (message.headers() or ()) if k in ("traceparent", "tracestate")]
    out.send(dlq_topic, key=message.key(), value=message.value(), partition=message.partition(), headers=headers)
    key = message.key()
    log.warning(
        "dead-lettered to %s: %s (%s)",
        dlq_topic,
        type(exc).__name__,
        getattr(exc, "reason", ""),
        extra={
            "event_id": key.decode(errors="replace") if key else None,
            "topic": message.topic(),
            "partition": message.partition(),
            "offset": message.offset(),
            "error": getattr(exc, "message", str(exc)),
        },
    )


# Kafka Connect's dead-letter headers (errors.deadletterqueue.context.headers.enable) for ours: a
# record the Connect sink could not convert or write reads back like any other dead letter.
CONNECT_HEADERS = {
    "error.class": "__connect.errors.exception.class.name",
    "error.message": "__connect.errors.exception.message",
    "source.topic": "__connect.errors.topic",
    "source.partition": "__connect.errors.partition",
    "source.offset": "__connect.errors.offset",
}


def connect_headers(h: dict[str, str]) -> dict[str, str]:
    """Connect's headers as ours: the reason is ``connect_<stage>`` (e.g. ``connect_value_converter``)."""
    out = {ours: h[theirs] for ours, theirs in CONNECT_HEADERS.items() if theirs in h}
    out["error.class"] = out["error.class"].rsplit(".", 1)[-1]
    out["error.reason"] = f"connect_{h.get('__connect.errors.stage', 'unknown').lower()}"
    out["attempts"] = "1"
    return out


@dataclass(frozen=True)
class DeadLetter:
    """A DLQ record read back: what failed, where it came from, and the original bytes."""

    key: bytes | None
    value: bytes | None
    error_class: str
    error_reason: str
    error_message: str
    source_topic: str
    source_partition: int
    source_offset: int
    attempts: int
    failed_at: int

    @classmethod
    def from_record(
        cls, key: bytes | None, value: bytes | None, headers: tuple[tuple[str, bytes], ...] | list[tuple[str, bytes]]
    ) -> DeadLetter:
        h = {k: v.decode(errors="replace") for k, v in headers if v is not None}
        if "error.class" not in h and CONNECT_HEADERS["error.class"] in h:
            h = connect_headers(h)
        return cls(
            key,
            value,
            h.get("error.class", ""),
            h.get("error.reason", ""),
            h.get("error.message", ""),
            h.get("source.topic", ""),
            int(h.get("source.partition", -1)),
            int(h.get("source.offset", -1)),
            int(h.get("attempts", 0)),
            int(h.get("failed.at", 0)),
        )
