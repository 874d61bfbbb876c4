"""Bad input through the workers' processors, without a broker (docs/reliability.md, "Bad input"):
every poison kind is dead-lettered alone with its reason and original bytes, and every good record
of the same batch comes out exactly as it would without them."""

from __future__ import annotations

import json

import pytest

from kstream_lab.errors import InvalidRecordError, StateError
from kstream_lab.schemas.avro import AvroRecordDecoder, StaticSchemas
from kstream_lab.workers.aggregator import AggregatorProcessor
from kstream_lab.workers.codec import _avro_columns
from kstream_lab.workers.dlq import DeadLetter
from kstream_lab.workers.enricher import EnricherProcessor
from kstream_lab.workers.order_rules import DAY_MS, OrderRules
from tests.support.aggregator import SPEC, processor
from tests.support.aggregator import order as agg_order
from tests.support.avro import ORDER, encode
from tests.support.fakes import Msg, RecordingOutput, json_msgs
from tests.support.poison import (
    ENRICHED,
    ENRICHED_MISSING_FIELD,
    ENRICHED_WRONG_TYPE,
    MISSING_FIELD,
    WRONG_TYPE,
    enriched_poison,
    order,
    raw_poison,
)

NOW = 1_750_000_000_000


class Tiers:
    """The tier client's interface, answering from a dict (no HTTP in this test)."""

    def lookup(self, ids):
        return {c: "gold" for c in ids}


def letters(out: RecordingOutput) -> list[tuple[bytes | None, bytes | None, str, str, int]]:
    dead = [DeadLetter.from_record(s.key, s.value, s.headers) for s in out.to("dlq")]
    return [(d.key, d.value, d.error_reason, d.source_topic, d.source_offset) for d in dead]


def test_the_enricher_dead_letters_every_poison_kind_alone_with_its_reason_and_bytes() -> None:
    poison = raw_poison(NOW, 1, 2, 3)
    good = [order(f"g{i}", NOW - 1000 * i, total_cents=100 + i) for i in range(5)]
    records = [(p.key, p.value, p.timestamp) for p in poison]
    for i, g in enumerate(good):  # good orders between and after the poison
        records.insert(3 * i, (g["order_id"].encode(), encode(ORDER, g, 1), NOW))
    msgs = [Msg("raw", 2, off, key, value, _timestamp=ts) for off, (key, value, ts) in enumerate(records)]
    proc = EnricherProcessor(
        decode=AvroRecordDecoder(StaticSchemas({1: ORDER, 2: WRONG_TYPE, 3: MISSING_FIELD})),
        encode=lambda v: json.dumps(v).encode(),
        tiers=Tiers(),  # type: ignore[arg-type]
        output="enriched",
        dlq="dlq",
    )
    out = RecordingOutput()
    proc.process(msgs, out)

    assert out.values("enriched") == [{**g, "loyalty_tier": "gold"} for g in good]
    offset = {m.key(): m.offset() for m in msgs}
    assert letters(out) == [(p.key, p.value, p.reason, "raw", offset[p.key]) for p in poison]
    assert {s.partition for s in out.sent} == {2}
    assert len(out.sent) == len(msgs)  # each record once: enriched or dead-lettered


def test_order_rules_limits_are_exact_and_none_switches_a_check_off() -> None:
    rules, where = OrderRules(max_value_bytes=10, max_event_age_ms=DAY_MS, max_event_lead_ms=60_000), {}
    rules.check_envelope(b"k", b"x" * 10, where)
    with pytest.raises(InvalidRecordError, match="value is 11 bytes, more than max_value_bytes 10") as exc:
        rules.check_envelope(b"k", b"x" * 11, where)
    assert exc.value.reason == "oversized"
    rules.check_order(order("o", NOW - DAY_MS), NOW, where)
    rules.check_order(order("o", NOW + 60_000), NOW, where)
    rules.check_order(order("o", NOW, total_cents=0), NOW, where)  # zero is a total, not a refund
    for ts, reason in ((NOW - DAY_MS - 1, "timestamp_too_old"), (NOW + 60_001, "timestamp_in_future")):
        with pytest.raises(InvalidRecordError) as exc:
            rules.check_order(order("o", ts), NOW, where)
        assert exc.value.reason == reason
    rules.check_order(order("o", 0), None, where)  # a record without a timestamp: event time unchecked
    off = OrderRules(None, None, None)
    off.check_envelope(b"k", b"x" * 1_000_000, where)
    off.check_order(order("o", 0), NOW, where)
    with pytest.raises(InvalidRecordError, match=r"field 'total_cents' is -1, a negative total at t\[3\]@9"):
        off.check_order(order("o", NOW, total_cents=-1), NOW, {"topic": "t", "partition": 3, "offset": 9})
    with pytest.raises(InvalidRecordError, match="key is not UTF-8 \\(byte 0xff at position 2\\)"):
        off.check_envelope(b"ab\xff", b"", where)


def test_the_aggregator_dead_letters_only_the_records_of_a_wrong_writer_schema() -> None:
    """Before, one record written with a schema whose total_cents is a string turned the bulk-decoded
    column into strings, and the whole batch (the good records too) went to the DLQ."""
    schemas = StaticSchemas({1: ENRICHED, 2: ENRICHED_WRONG_TYPE, 3: ENRICHED_MISSING_FIELD})
    ints, others = AggregatorProcessor.fields(SPEC)
    proc = processor(decode=lambda v, t, p, o: _avro_columns(schemas, v, t, p, o, ints, others))
    poison = enriched_poison(NOW, 1, 2, 3)
    good = [order(f"g{i}", 1_000 * i, loyalty_tier="gold", total_cents=10 + i) for i in range(4)]
    values = (
        [encode(ENRICHED, g, 1) for g in good[:2]]
        + [p.value for p in poison]
        + [encode(ENRICHED, g, 1) for g in good[2:]]
    )
    msgs = [Msg("in", 0, off, b"k%d" % off, v) for off, v in enumerate(values)]
    out = RecordingOutput()
    proc.process(msgs, out)
    assert [(value, reason, offset) for _, value, reason, _, offset in letters(out)] == [
        (p.value, p.reason, 2 + i) for i, p in enumerate(poison)
    ]
    assert out.values("agg") == [
        {
            "source_partition": 0,
            "window_start": 0,
            "window_end": 10_000,
            "tier": "gold",
            "total_cents": 10 + 11 + 12 + 13,
            "count": 4,
            "final": False,
        }
    ]


def changelog_of(records: list[dict]) -> list[tuple[bytes, bytes | None]]:
    proc, entries = processor(), []
    proc.process(json_msgs("in", 0, records), RecordingOutput())
    entries += proc.changelog()[0]
    return entries


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        (b"\xff not json", b"{}", "is not window state: 'utf-8' codec can't decode"),
        (b'"just a string"', b"{}", "the key is not [partition, window_start, [loyalty_tier]]"),
        (b'[0, 0, ["gold"]]', b"{not json", "is not window state: Expecting property name"),
        (b'[0, 0, ["gold"]]', b'{"total_cents": 5}', "does not hold the metrics ['count', 'total_cents']"),
        (b'[0, 0, ["gold"]]', b'{"total_cents": "5", "count": 1}', "has a metric that is not an integer"),
        (b"0:__watermark__", b'{"watermark": "soon"}', "watermark record"),
    ],
)
def test_a_corrupt_changelog_record_stops_the_restore_naming_partition_and_key(key, value, why) -> None:
    entries = changelog_of([agg_order(1, 1_000), agg_order(2, 2_000)]) + [(key, value)]
    with pytest.raises(StateError) as exc:
        processor(changelog={0: entries})
    assert str(exc.value).startswith(f"changelog: changelog partition 0: the record with key {key!r} ")
    assert why in str(exc.value) and "nothing was processed or committed" in str(exc.value)


def test_a_corrupt_changelog_record_replaced_later_is_harmless() -> None:
    good = changelog_of([agg_order(1, 1_000), agg_order(2, 2_000, cents=50)])
    window_key = next(k for k, _ in good if k.startswith(b"["))
    entries = [(window_key, b"garbage"), (b"\xff", b"x"), (b"\xff", None)] + good  # each superseded
    proc, out = processor(changelog={0: entries}), RecordingOutput()
    proc.process(json_msgs("in", 0, [agg_order(3, 3_000, cents=7)], start=2), out)
    assert [(v["total_cents"], v["count"]) for v in out.values("agg")] == [(157, 3)]
