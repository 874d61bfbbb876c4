"""Bad input through the real pipeline (docs/reliability.md, "Bad input"): one record of every poison
kind into orders_raw and, past the enricher, into orders_enriched, among generated good orders; and a
corrupt changelog record under a restarted aggregator.

Exact checks: each dead letter carries its kind's ``error.reason``, the original key and bytes and the
coordinates of its source record; every good order is in orders_enriched exactly once; late == late;
the sink equals the truth to the cent. The figures printed at the end are the ones in the doc.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import polars as pl

from kstream_lab.kafka.admin import committed_offsets
from kstream_lab.kafka.producing import BatchProducer
from kstream_lab.kafka.read import snapshot_bounds
from kstream_lab.kafka.schema_registry import SchemaRegistry
from kstream_lab.workers.dlq import DeadLetter
from tests.support.avro import ORDER
from tests.support.pipeline import Pipeline, expected_rows, produce_truth, sink_by_key, sink_matches
from tests.support.poison import (
    ENRICHED,
    ENRICHED_MISSING_FIELD,
    ENRICHED_WRONG_TYPE,
    MISSING_FIELD,
    WRONG_TYPE,
    Poison,
    enriched_poison,
    raw_poison,
)

GOOD = 3000


def produce(pipe: Pipeline, topic: str, poison: list[Poison]) -> None:
    with BatchProducer(pipe.settings) as producer:
        for i, p in enumerate(poison):
            producer.produce(topic, key=p.key, value=p.value, partition=i % 6, timestamp=p.timestamp)


def test_every_poison_kind_is_dead_lettered_with_its_reason_and_nothing_else_is_lost(live_pipeline: Pipeline) -> None:
    pipe = live_pipeline
    raw, enriched = pipe.topic("orders_raw"), pipe.topic("orders_enriched")
    registry = SchemaRegistry(pipe.settings)
    ids = {
        name: registry.register(subject, text).schema_id
        for name, subject, text in (
            ("order", f"{raw}-value", ORDER),
            ("wrong", f"{raw}-poison-wrong-type", WRONG_TYPE),
            ("missing", f"{raw}-poison-missing-field", MISSING_FIELD),
            ("enriched", f"{enriched}-value", ENRICHED),
            ("e-wrong", f"{enriched}-poison-wrong-type", ENRICHED_WRONG_TYPE),
            ("e-missing", f"{enriched}-poison-missing-field", ENRICHED_MISSING_FIELD),
        )
    }
    for name in ("customer-service", "enricher", "aggregator", "sink"):
        pipe.start(name)
    now = int(time.time() * 1000)
    bad_raw = raw_poison(now, ids["order"], ids["wrong"], ids["missing"])
    bad_enriched = enriched_poison(now, ids["enriched"], ids["e-wrong"], ids["e-missing"])
    produce(pipe, raw, bad_raw)
    truth = produce_truth(pipe, GOOD, seed=17, late_fraction=0.02, poison_fraction=0.0)
    produce(pipe, enriched, bad_enriched)

    window = pipe.spec.aggregation().window
    expected = expected_rows(truth, window.size_ms, window.grace_ms)
    poison = len(bad_raw) + len(bad_enriched)
    pipe.wait_for(
        lambda: len(pipe.read("orders_dlq")) >= poison and sink_matches(pipe, expected),
        timeout=120,
        what="every dead letter and the sink to match the truth",
    )

    dlq = pipe.read("orders_dlq")
    letters = [DeadLetter.from_record(r.key, r.value, r.headers) for r in dlq]
    got = Counter((d.key, d.value, d.error_reason, d.source_topic) for d in letters)
    want = Counter(
        [(p.key, p.value, p.reason, raw) for p in bad_raw]
        + [(p.key, p.value, p.reason, enriched) for p in bad_enriched]
    )
    assert got == want
    sources = {
        (r.topic, r.partition, r.offset): (r.key, r.value)
        for role in ("orders_raw", "orders_enriched")
        for r in pipe.read(role)
    }
    assert all(sources[(d.source_topic, d.source_partition, d.source_offset)] == (d.key, d.value) for d in letters)

    good_ids = sorted(truth.filter(pl.col("kind") != "poison")["order_id"].to_list())
    poison_keys = {p.key for p in bad_enriched}
    out = Counter(r.key for r in pipe.read("orders_enriched") if r.key not in poison_keys)
    assert max(out.values()) == 1 and sorted(k.decode() for k in out) == good_ids
    late = truth.filter(pl.col("kind") == "late")["order_id"].to_list()
    assert sorted(r.key.decode() for r in pipe.read("orders_late")) == sorted(late)
    rows = sink_by_key(pipe.sink_rows())
    assert rows == expected
    print(
        f"\nbad input figures: in {GOOD + poison} ({GOOD} good, {len(bad_raw)} poison into orders_raw, "
        f"{len(bad_enriched)} into orders_enriched); out: orders_enriched {sum(out.values())} good, "
        f"orders_late {len(late)}, dlq {len(dlq)}; duplicates {sum(out.values()) - len(out)}, "
        f"lost {len(good_ids) - len(out)}; sink rows {len(rows)}, cents {sum(v['total_cents'] for v in rows.values())}"
    )


def test_a_corrupt_changelog_record_stops_the_aggregator_with_one_line_and_commits_nothing(
    live_pipeline: Pipeline,
) -> None:
    pipe = live_pipeline
    for name in ("customer-service", "enricher", "aggregator"):
        pipe.start(name)
    produce_truth(pipe, 500, seed=5, late_fraction=0.0, poison_fraction=0.0)
    pipe.wait_for(pipe.aggregator_caught_up, timeout=90, what="the aggregator to commit every record")
    assert pipe.terminate("aggregator")[0] == 0

    changelog = pipe.workers.aggregator.changelog
    with BatchProducer(pipe.settings) as producer:
        producer.produce(changelog, key=b'[2, 60000, ["gold"]]', value=b"{not state", partition=2)
    produce_truth(pipe, 200, seed=6, late_fraction=0.0, poison_fraction=0.0)  # more input, to be kept
    topic = pipe.topic("orders_enriched")
    parts = sorted(snapshot_bounds(pipe.settings, topic))
    before = committed_offsets(pipe.settings, pipe.workers.aggregator.group_id, topic, parts)

    proc = pipe.start("aggregator", wait=False)
    assert proc.wait(60) == 2
    pipe.procs.pop("aggregator")
    logged = [json.loads(line) for line in pipe.log("aggregator").splitlines() if line.startswith("{")]
    assert [e["message"] for e in logged if e["level"] == "error"] == [
        f"state: {changelog}: changelog partition 2: the record with key b'[2, 60000, [\"gold\"]]' is not window "
        "state: Expecting property name enclosed in double quotes: line 1 column 2 (char 1) (nothing was processed "
        "or committed; restore the changelog or rebuild the state from the input (docs/reliability.md#bad-input))"
    ]
    assert "Traceback" not in pipe.log("aggregator")
    assert committed_offsets(pipe.settings, pipe.workers.aggregator.group_id, topic, parts) == before
