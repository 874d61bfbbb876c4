"""The aggregator's processor over the shared fold engine: coalesced updates, one final, late routing,
DLQ, and a restore from its own changelog that continues exactly where the crashed instance stopped."""

from __future__ import annotations

import json

from kstream_lab.workers.dlq import DeadLetter
from tests.support.aggregator import order, processor
from tests.support.fakes import RecordingOutput, json_msgs


def test_updates_are_coalesced_per_batch_and_a_window_is_final_once() -> None:
    proc, out = processor(), RecordingOutput()
    batch = json_msgs(
        "in",
        0,
        [
            order(1, 1_000),
            order(2, 2_000, cents=50),
            order(3, 9_000, "silver", 7),
            order(4, 11_500, cents=1),
            order(5, 3_000, cents=5),
        ],
    )
    proc.process(batch, out)
    assert proc.changelog()  # every batch leaves changelog entries behind
    assert out.values("agg") == [
        {
            "source_partition": 0,
            "window_start": 0,
            "window_end": 10_000,
            "tier": "gold",
            "total_cents": 155,
            "count": 3,
            "final": False,
        },
        {
            "source_partition": 0,
            "window_start": 0,
            "window_end": 10_000,
            "tier": "silver",
            "total_cents": 7,
            "count": 1,
            "final": False,
        },
        {
            "source_partition": 0,
            "window_start": 10_000,
            "window_end": 20_000,
            "tier": "gold",
            "total_cents": 1,
            "count": 1,
            "final": False,
        },
    ]
    assert [s.key for s in out.to("agg")] == [b"0:gold:0", b"0:silver:0", b"10000:gold:0"]
    out2 = RecordingOutput()
    proc.process(json_msgs("in", 0, [order(6, 12_000), order(7, 4_000, cents=9)], start=5), out2)
    finals = [v for v in out2.values("agg") if v["final"]]
    assert [(v["window_start"], v["tier"], v["total_cents"], v["count"]) for v in finals] == [
        (0, "gold", 155, 3),
        (0, "silver", 7, 1),
    ]
    assert [json.loads(s.value)["order_id"] for s in out2.to("late")] == ["o7"]


def test_poison_goes_to_the_dlq_with_its_coordinates() -> None:
    proc, out = processor(), RecordingOutput()
    proc.process(json_msgs("in", 0, [order(1, 1_000), b"\x00\x00\x00", {"order_id": "x", "timestamp": "soon"}]), out)
    letters = [DeadLetter.from_record(s.key, s.value, s.headers) for s in out.to("dlq")]
    assert [(d.error_class, d.source_topic, d.source_partition, d.source_offset, d.attempts) for d in letters] == [
        ("DeserializationError", "in", 0, 1, 1),
        ("InvalidRecordError", "in", 0, 2, 1),
    ]
    assert out.to("dlq")[0].value == b"\x00\x00\x00"
    assert len(out.to("agg")) == 1


def test_restore_from_changelog_continues_exactly() -> None:
    records = [order(i, 1_000 * i + (i % 3) * 700, ("gold", "silver")[i % 2], 10 + i) for i in range(60)]
    straight, out_a = processor(), RecordingOutput()
    for start in range(0, 60, 10):
        straight.process(json_msgs("in", 0, records[start : start + 10], start), out_a)

    first, out_b = processor(), RecordingOutput()
    changelog = []
    for start in range(0, 30, 10):
        first.process(json_msgs("in", 0, records[start : start + 10], start), out_b)
        changelog += first.changelog()[0]
    restored = processor(changelog={0: changelog})
    for start in range(30, 60, 10):
        restored.process(json_msgs("in", 0, records[start : start + 10], start), out_b)
    finals = lambda out: [v for v in out.values("agg") if v["final"]]  # noqa: E731
    assert finals(out_b) == finals(out_a) and len(finals(out_a)) >= 8
    assert out_b.values("late") == out_a.values("late")
