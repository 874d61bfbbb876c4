"""Bad input through the workers' processors, without a broker (docs/reliability.md, "Bad input"):
every poison kind is dead-lettered alone with its reason and original bytes, and every good record
of the same batch comes out exactly as it would without them."""

from __future__ import annotations

import json

import pytest

from kstream_lab.errors import InvalidRecordError
from kstream_lab.schemas.avro import AvroRecordDecoder, StaticSchemas
from kstream_lab.workers.aggregator import AggregatorProcessor
from kstream_lab.workers.codec import _avro_columns
from kstream_lab.workers.dlq import DeadLetter
from kstream_lab.workers.enricher import EnricherProcessor
from kstream_lab.workers.order_rules import DAY_MS, OrderRules
from tests.support.aggregator import SPEC, processor
from tests.support.avro import ORDER, encode
from tests.support.fakes import Msg, RecordingOutput
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
