"""One POST /orders, traced across the processes: every component runs with OTEL_TRACES_EXPORTER=file
(its own KSTREAM_TRACES_FILE); the spans the order service, enricher, aggregator and sink recorded
for that order share the trace id the order service answered with, and each hop's span is the child
of the previous hop's (the order service's produce span is inside its request's span)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.support.checks import metric
from tests.support.pipeline import Pipeline


def spans(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def test_one_order_is_one_trace_through_every_process(live_pipeline: Pipeline, tmp_path: Path) -> None:
    pipe = live_pipeline
    files = {name: tmp_path / f"{name}.spans.jsonl" for name in ("order-service", "enricher", "aggregator", "sink")}
    for name in ("customer-service", *files):
        env = {"OTEL_TRACES_EXPORTER": "file", "KSTREAM_TRACES_FILE": str(files.get(name, tmp_path / f"{name}.jsonl"))}
        pipe.start(name, env=env)
    resp = httpx.post(
        f"http://127.0.0.1:{pipe.workers.order_service.port}/orders",
        json={"customer_id": "C0000042", "total_cents": 1999},
        timeout=30,
    )
    assert resp.status_code == 202, resp.text
    trace_id = "0x" + resp.json()["trace_id"]

    def of_trace(name: str) -> list[dict]:
        return [s for s in spans(files[name]) if s["context"]["trace_id"] == trace_id]

    pipe.wait_for(lambda: of_trace("sink"), timeout=120, what="the sink's span of the order")
    # the one update the order triggered, timed from its POST (the kstream-origin-ms header)
    assert metric(pipe, "sink", "kstream_end_to_end_seconds_count") == 1
    assert 0 < metric(pipe, "sink", "kstream_end_to_end_seconds_sum") < 120
    got = {name: of_trace(name) for name in files}
    (server,) = [s for s in got["order-service"] if s["parent_id"] is None]
    (produce,) = [s for s in got["order-service"] if s["name"] == "produce order"]
    assert (server["name"], server["kind"]) == ("POST /orders", "SpanKind.SERVER")
    assert produce["kind"] == "SpanKind.PRODUCER"
    by_id = {s["context"]["span_id"]: s for s in got["order-service"]}
    ancestor = produce  # inside the request's span (FastAPI records its endpoint's spans in between)
    while ancestor["parent_id"] is not None:
        ancestor = by_id[ancestor["parent_id"]]
    assert ancestor is server
    (enrich,), (aggregate,), (sink,) = got["enricher"], got["aggregator"], got["sink"]
    assert [s["name"] for s in (enrich, aggregate, sink)] == ["enrich", "aggregate", "sink"]
    chain = [server, produce, enrich, aggregate, sink]
    for parent, child in zip(chain[1:], chain[2:], strict=False):
        assert child["parent_id"] == parent["context"]["span_id"], (parent["name"], child["name"])
    services = [s["resource"]["attributes"]["service.name"] for s in chain]
    assert services == ["order-service", "order-service", "enricher", "aggregator", "sink"]
    assert len({s["context"]["span_id"] for s in chain}) == 5
