"""``kstream_lab.table`` over a real compacted topic with updates and tombstones: at several positions
(per-partition offsets, a time, latest) it equals a plain fold of the raw records up to there."""

from __future__ import annotations

import json
import random

import kstream_lab
from kstream_lab.kafka.producing import BatchProducer
from kstream_lab.settings import Settings


def fold(raw_rows: list[dict], upto: dict[int, int] | None = None, before_ms: int | None = None) -> dict[str, dict]:
    state: dict[str, dict] = {}
    for r in sorted(raw_rows, key=lambda r: (r["partition"], r["offset"])):
        if upto is not None and r["offset"] >= upto[r["partition"]]:
            continue
        if before_ms is not None and r["timestamp"].timestamp() * 1000 >= before_ms:
            continue
        key = r["key"] if isinstance(r["key"], str) else r["key"].decode()
        if r["value"] is None:
            state.pop(key, None)
        else:
            state[key] = json.loads(r["value"])
    return state


def test_table_at_positions_equals_the_fold_of_the_raw_records(kafka_settings: Settings, topic_factory) -> None:
    topic = topic_factory("customers", partitions=3, cleanup_policy="compact", value_format="json")
    rng = random.Random(7)
    base_ms = 1_700_000_000_000
    with BatchProducer(kafka_settings) as producer:
        for i in range(600):
            key = f"C{rng.randrange(40):04d}"
            value = None if rng.random() < 0.12 else json.dumps({"customer_id": key, "tier": rng.choice("abc"), "n": i})
            producer.produce(
                topic,
                key=key.encode(),
                value=value.encode() if value else None,
                partition=int(key[1:]) % 3,
                timestamp=base_ms + i * 1000,
            )
    raw = kstream_lab.replay(topic, value_format="raw", settings=kafka_settings).to_dicts()
    assert len(raw) == 600
    positions = [
        ("latest", fold(raw)),
        ({0: 50, 1: 0, 2: 120}, fold(raw, upto={0: 50, 1: 0, 2: 120})),
        (f"@{base_ms + 300_000}", fold(raw, before_ms=base_ms + 300_000)),
        (0, {}),
    ]
    for at, want in positions:
        got = kstream_lab.table(topic, at=at, settings=kafka_settings)
        rows = {r["key"].decode() if isinstance(r["key"], bytes) else r["key"]: r for r in got.to_dicts()}
        assert sorted(rows) == sorted(want), at
        for key, value in want.items():
            assert {k: rows[key][k] for k in ("customer_id", "tier", "n")} == value, (at, key)
