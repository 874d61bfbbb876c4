"""Small pieces the workers rely on: DLQ headers, trace context, worker config, sink coalescing, JSON logs."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from kstream_lab.errors import ConfigError, DeserializationError
from kstream_lab.observability.logs import setup_logging
from kstream_lab.observability.tracing import child_trace_headers, new_trace_headers, trace_id_of
from kstream_lab.pipeline_spec import load_pipeline
from kstream_lab.sinks.base import coalesce
from kstream_lab.workers.dlq import DeadLetter, dlq_headers
from tests.support.paths import ROOT


def test_dlq_headers_round_trip() -> None:
    exc = DeserializationError("no magic byte", topic="orders_raw", partition=3, offset=41, reason="not_avro")
    headers = dlq_headers(exc, topic="orders_raw", partition=3, offset=41, attempts=2, failed_at_ms=1_700_000_000_000)
    assert [k for k, _ in headers] == [
        "error.class",
        "error.reason",
        "error.message",
        "source.topic",
        "source.partition",
        "source.offset",
        "attempts",
        "failed.at",
    ]
    d = DeadLetter.from_record(b"k", b"\x01", headers)
    assert (
        d.error_class,
        d.error_reason,
        d.error_message,
        d.source_topic,
        d.source_partition,
        d.source_offset,
        d.attempts,
        d.failed_at,
    ) == (
        "DeserializationError",
        "not_avro",
        "no magic byte at orders_raw[3]@41",
        "orders_raw",
        3,
        41,
        2,
        1_700_000_000_000,
    )


def test_trace_context_is_continued_hop_by_hop() -> None:
    root = new_trace_headers()
    hop1 = child_trace_headers(root)
    hop2 = child_trace_headers(hop1)
    assert trace_id_of(root) == trace_id_of(hop1) == trace_id_of(hop2)
    assert len({dict(h)["traceparent"] for h in (root, hop1, hop2)}) == 3
    assert trace_id_of([("traceparent", b"garbage")]) is None
    assert trace_id_of(child_trace_headers(None)) is not None  # no parent: a new trace starts


def test_worker_config_defaults_and_errors(tmp_path: Path) -> None:
    cfg = load_pipeline(ROOT / "pipelines" / "orders.yaml").workers
    assert (cfg.enricher.input, cfg.enricher.output, cfg.aggregator.changelog) == (
        "orders_raw",
        "orders_enriched",
        "order-aggregator-changelog",
    )
    assert cfg.enricher.breaker_reset_ms == 3000 and cfg.customer_service_url == "http://127.0.0.1:8601"
    text = (ROOT / "pipelines" / "orders.yaml").read_text().replace("breaker_fail_max: 3", "breaker_fail_max: 0")
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(ConfigError, match=r"workers\.enricher\.breaker_fail_max"):
        load_pipeline(tmp_path / "p.yaml")


def test_coalesce_keeps_the_last_row_and_never_replaces_a_final() -> None:
    def row(total: int, final: bool) -> dict:
        return {"window_start": 0, "tier": "gold", "source_partition": 1, "total_cents": total, "final": final}

    assert coalesce([row(1, False), row(2, False)]) == [row(2, False)]
    assert coalesce([row(3, True), row(2, False)]) == [row(3, True)]


def test_json_logs_carry_service_level_and_event_id() -> None:
    stream = io.StringIO()
    log = setup_logging("enricher", stream=stream)
    log.info("enriched", extra={"event_id": "o-1", "partition": 2})
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert (line["service"], line["level"], line["event_id"], line["partition"], line["message"]) == (
        "enricher",
        "info",
        "o-1",
        2,
        "enriched",
    )
    logging.getLogger().handlers.clear()


def test_the_origin_header_travels_through_every_hop() -> None:
    """The order service's ``kstream-origin-ms`` reaches the sink unchanged, next to the trace."""
    from kstream_lab.observability.tracing import ORIGIN, origin_headers, origin_ms

    root = new_trace_headers() + origin_headers(1_700_000_000_123)
    hop2 = child_trace_headers(child_trace_headers(root, "enrich"), "aggregate")
    assert origin_ms(hop2) == 1_700_000_000_123
    assert [k for k, _ in hop2].count(ORIGIN) == 1
    assert origin_ms(child_trace_headers(new_trace_headers())) is None  # generated orders carry none
    assert origin_ms([(ORIGIN, b"not-a-number")]) is None
