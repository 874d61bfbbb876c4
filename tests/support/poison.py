"""One record of every kind of bad input for orders_raw (docs/reliability.md, "Bad input"), each with
the ``error.reason`` its dead letter must carry; shared by the unit test (fixed schema ids) and the
live pipeline test (ids from the real registry)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from kstream_lab.schemas.avro import frame
from tests.support.avro import ORDER, SCHEMAS, encode

ENRICHED = SCHEMAS["EnrichedOrder"].text
UNKNOWN_SCHEMA_ID = 0x7FFFFF42  # never registered


def variant(text: str, *, drop: str | None = None, retype: tuple[str, str] | None = None) -> str:
    """``text`` (a record schema) without field ``drop``, or with ``retype``'s field given another type."""
    schema = json.loads(text)
    schema["fields"] = [f for f in schema["fields"] if f["name"] != drop]
    for f in schema["fields"]:
        if retype and f["name"] == retype[0]:
            f["type"] = retype[1]
    return json.dumps(schema)


# Orders written with another registered schema: they decode, and fail the field checks.
WRONG_TYPE = variant(ORDER, retype=("total_cents", "string"))
MISSING_FIELD = variant(ORDER, drop="customer_id")
ENRICHED_WRONG_TYPE = variant(ENRICHED, retype=("total_cents", "string"))
ENRICHED_MISSING_FIELD = variant(ENRICHED, drop="timestamp")


@dataclass(frozen=True)
class Poison:
    kind: str  # the row of docs/reliability.md
    reason: str  # the error.reason header its dead letter must carry
    key: bytes | None
    value: bytes | None
    timestamp: int  # the Kafka record timestamp to produce it with (ms)


def order(order_id: str, ts: int, **fields: object) -> dict:
    return {
        "order_id": order_id,
        "customer_id": "C0000042",
        "total_cents": 2599,
        "currency": "EUR",
        "item_count": 1,
        "timestamp": ts,
        **fields,
    }


def raw_poison(now_ms: int, order_id: int, wrong_type_id: int, missing_field_id: int) -> list[Poison]:
    """Every kind of bad record for orders_raw, produced at ``now_ms``; the ints are the schema ids of
    Order and of its WRONG_TYPE and MISSING_FIELD variants."""

    def valid(oid: str, **fields: object) -> bytes:
        return encode(ORDER, order(oid, now_ms, **fields), order_id)

    body = valid("p-truncated")
    cases = [
        ("not Avro (JSON text)", "not_avro", b"p-json", json.dumps(order("p-json", now_ms)).encode()),
        ("unknown schema id", "unknown_schema_id", b"p-unknown-id", frame(UNKNOWN_SCHEMA_ID, valid("x")[5:])),
        ("truncated header", "truncated", b"p-short", b"\x00\x00\x00"),
        ("truncated body", "truncated", b"p-truncated", body[:-3]),
        ("trailing bytes", "trailing_bytes", b"p-trailing", valid("p-trailing") + b"\x00\x01"),
        ("empty value", "empty_value", b"p-empty", b""),
        ("tombstone (null value)", "tombstone", b"p-null", None),
        (
            "wrong type (total_cents a string)",
            "wrong_type",
            b"p-wrong-type",
            encode(WRONG_TYPE, order("p-wrong-type", now_ms, total_cents="25.99"), wrong_type_id),
        ),
        (
            "missing field (no customer_id)",
            "missing_field",
            b"p-missing",
            encode(
                MISSING_FIELD,
                {k: v for k, v in order("p-missing", now_ms).items() if k != "customer_id"},
                missing_field_id,
            ),
        ),
        ("negative total", "negative_total", b"p-negative", valid("p-negative", total_cents=-2599)),
        (
            "timestamp far past (seconds for ms)",
            "timestamp_too_old",
            b"p-seconds",
            valid("p-seconds", timestamp=now_ms // 1000),
        ),
        ("timestamp zero", "timestamp_too_old", b"p-zero", valid("p-zero", timestamp=0)),
        (
            "timestamp far future (us for ms)",
            "timestamp_in_future",
            b"p-micros",
            valid("p-micros", timestamp=now_ms * 1000),
        ),
        ("oversized value (100 kB)", "oversized", b"p-oversized", valid("p-oversized", customer_id="C" * 100_000)),
        ("key not UTF-8", "key_not_utf8", b"p-\xff\xfe-key", valid("p-key")),
    ]
    return [Poison(kind, reason, key, value, now_ms) for kind, reason, key, value in cases]


def enriched_poison(now_ms: int, enriched_id: int, wrong_type_id: int, missing_field_id: int) -> list[Poison]:
    """Bad records written straight into orders_enriched (past the enricher): the aggregator's own
    decoder must dead-letter each alone, even in a batch of good records of another schema."""
    good = order("q-truncated", now_ms, loyalty_tier="gold")
    cases = [
        ("not Avro", "not_avro", b"q-json", b'{"order_id": "q-json"}'),
        ("unknown schema id", "unknown_schema_id", b"q-unknown-id", frame(UNKNOWN_SCHEMA_ID, b"\x02ab")),
        ("truncated body", "truncated", b"q-truncated", encode(ENRICHED, good, enriched_id)[:-4]),
        (
            "wrong type (total_cents a string)",
            "wrong_type",
            b"q-wrong-type",
            encode(ENRICHED_WRONG_TYPE, {**good, "order_id": "q-wrong-type", "total_cents": "25.99"}, wrong_type_id),
        ),
        (
            "missing field (no timestamp)",
            "missing_field",
            b"q-missing",
            encode(
                ENRICHED_MISSING_FIELD,
                {k: v for k, v in good.items() if k != "timestamp"} | {"order_id": "q-missing"},
                missing_field_id,
            ),
        ),
    ]
    return [Poison(kind, reason, key, value, now_ms) for kind, reason, key, value in cases]
