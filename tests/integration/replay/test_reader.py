"""Bounded reads against the real broker: boundaries, snapshots, transactions, gaps and errors."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime

import polars as pl
import pytest
from confluent_kafka import TopicPartition

import kstream_lab
from kstream_lab.errors import DeserializationError, TopicError
from kstream_lab.kafka.clients import make_admin, make_producer
from kstream_lab.replay.reader import RangeError, read_range, resolve_range

# Recent event times: the broker's time-based retention deletes records stamped years ago (even in the
# active segment), which would make these tests race the retention check.
T0 = (int(time.time()) - 3_600) * 1000


@pytest.fixture(params=["native", "python"])
def fetch_path(request) -> str:
    return request.param


@pytest.fixture
def kafka_settings(kafka_settings, fetch_path):
    """Every test here runs on both fetch paths: the native C loop ("native" fails if it cannot be
    built, so CI proves it works) and confluent-kafka's Python API. (The parameter sits on its own
    fixture: on this one pytest would hand it to the session fixture and restart the broker.)"""
    return kafka_settings.model_copy(update={"replay_fetch": fetch_path})


def order(i: int, ts: int) -> dict:
    return {"order_id": f"o{i}", "total_cents": 100 + i, "timestamp": ts, "loyalty_tier": "gold"}


def test_time_boundaries_are_inclusive_start_exclusive_end(kafka_settings, topic_factory, produce_json):
    topic = topic_factory("bounds", partitions=2)
    # partition 0: ts T0+0,1000,...,9000; partition 1: T0+500, 1500, ...
    produce_json(
        topic, [(p, T0 + i * 1000 + p * 500, order(i, T0 + i * 1000 + p * 500)) for i in range(10) for p in (0, 1)]
    )
    df = kstream_lab.replay(
        topic, start=f"@{T0 + 3000}", end=datetime.fromtimestamp((T0 + 6000) / 1000, UTC), settings=kafka_settings
    )
    assert df.columns[:6] == ["topic", "partition", "offset", "kafka_timestamp", "key", "headers"]
    assert df.select("partition", "offset", "timestamp").rows() == [
        (0, 3, T0 + 3000),
        (0, 4, T0 + 4000),
        (0, 5, T0 + 5000),
        (1, 3, T0 + 3500),
        (1, 4, T0 + 4500),
        (1, 5, T0 + 5500),
    ]
    assert df["kafka_timestamp"][0] == datetime.fromtimestamp((T0 + 3000) / 1000, UTC)
    assert df["key"].to_list() == ["k6", "k8", "k10", "k7", "k9", "k11"]
    # offsets: int for all partitions, dicts per partition; "earliest"/"latest"
    assert kstream_lab.replay(topic, start=8, settings=kafka_settings)["offset"].to_list() == [8, 9, 8, 9]
    df = kstream_lab.replay(topic, start={1: 2}, end={1: 4}, settings=kafka_settings)
    assert df.select("partition", "offset").rows() == [(1, 2), (1, 3)]
    assert kstream_lab.replay(topic, "earliest", "latest", partitions=[0], settings=kafka_settings).height == 10
    assert kstream_lab.replay(topic, start="latest", settings=kafka_settings).height == 0
    # a start time after every record, an end before every record
    assert kstream_lab.replay(topic, start=f"@{T0 + 60_000}", settings=kafka_settings).height == 0
    assert kstream_lab.replay(topic, end=f"@{T0}", settings=kafka_settings).height == 0
    assert kstream_lab.replay(topic, end=f"@{T0 + 1}", settings=kafka_settings)["offset"].to_list() == [0]
    # a projection, kept batch by batch: same rows, only the named columns
    df = kstream_lab.replay(topic, start=8, columns=["partition", "offset", "total_cents"], settings=kafka_settings)
    assert df.rows() == [(0, 8, 108), (0, 9, 109), (1, 8, 108), (1, 9, 109)]
    with pytest.raises(RangeError, match=r"no column\(s\) \['nope'\]"):
        kstream_lab.replay(topic, columns=["offset", "nope"], settings=kafka_settings)
    # projected metadata is extracted only when shown, and then exactly: "timestamp" is the value's
    # field here, "kafka_timestamp" the record's
    full = kstream_lab.replay(topic, settings=kafka_settings)
    for cols in (["offset", "timestamp"], ["kafka_timestamp", "key", "total_cents"], ["headers", "partition"]):
        assert kstream_lab.replay(topic, columns=cols, settings=kafka_settings).equals(full.select(cols)), cols


def test_bounded_read_while_a_producer_keeps_writing(kafka_settings, topic_factory, produce_json):
    topic = topic_factory("bounded", partitions=3)
    produce_json(topic, [(i % 3, T0 + i, order(i, T0 + i)) for i in range(30_000)])
    stop = threading.Event()
    delivered = []

    def keep_writing():
        producer = make_producer(kafka_settings)
        i = 0
        while not stop.is_set():
            producer.produce(
                topic,
                value=b'{"order_id":"late-writer"}',
                partition=i % 3,
                on_delivery=lambda err, _m: delivered.append(err),
            )
            producer.poll(0)
            i += 1
            if i % 500 == 0:
                time.sleep(0.01)
        producer.flush(10)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        while len(delivered) < 1000:
            time.sleep(0.05)
        rng = resolve_range(kafka_settings, topic)
        df = read_range(kafka_settings, rng, batch_size=5_000)
    finally:
        stop.set()
        writer.join()
    assert rng.offsets > 30_000  # the writer was writing when the snapshot was taken
    assert df.height == rng.offsets
    for p, r in rng.partitions.items():
        offs = df.filter(pl.col("partition") == p)["offset"]
        assert offs.to_list() == list(range(r.start, r.end))
    assert df.filter(pl.col("order_id") != "late-writer").height == 30_000


def test_aborted_transactions_are_invisible_and_open_ones_do_not_block(kafka_settings, topic_factory):
    topic = topic_factory("txn", partitions=1)
    producer = make_producer(kafka_settings, transactional_id=f"{topic}-tx")
    producer.init_transactions(30)

    def txn(first: int, count: int, commit: bool) -> None:
        producer.begin_transaction()
        for i in range(first, first + count):
            producer.produce(topic, key=b"k", value=f'{{"n":{i}}}'.encode(), partition=0)
        producer.flush(10)
        (producer.commit_transaction if commit else producer.abort_transaction)(30)

    txn(0, 10, True)
    txn(10, 5, False)
    txn(15, 10, True)
    txn(25, 3, False)  # the range ends in aborted records and an abort marker
    df = kstream_lab.replay(topic, settings=kafka_settings)
    assert df["n"].to_list() == list(range(10)) + list(range(15, 25))
    # offsets: 0-9 data, 10 commit marker, 11-15 aborted, 16 abort marker, 17-26 data, 27 marker, ...
    assert df["offset"].to_list() == list(range(10)) + list(range(17, 27))
    # an open transaction: the end snapshot is the last stable offset, the read returns at once
    producer.begin_transaction()
    producer.produce(topic, value=b'{"n":-1}', partition=0)
    producer.flush(10)
    t = time.monotonic()
    assert kstream_lab.replay(topic, settings=kafka_settings)["n"].to_list() == df["n"].to_list()
    assert time.monotonic() - t < 10
    producer.abort_transaction(30)


def test_empty_ranges_partitions_and_unknown_topics(kafka_settings, topic_factory, produce_json):
    topic = topic_factory("empty", partitions=3)
    df = kstream_lab.replay(topic, settings=kafka_settings)
    assert df.height == 0 and df.columns == ["topic", "partition", "offset", "timestamp", "key", "headers"]
    produce_json(topic, [(1, T0, order(0, T0)), (1, T0 + 1, order(1, T0 + 1))])
    df = kstream_lab.replay(topic, settings=kafka_settings)  # partitions 0 and 2 are empty
    assert df.select("partition", "offset", "order_id").rows() == [(1, 0, "o0"), (1, 1, "o1")]
    assert kstream_lab.replay(topic, start=1, end=1, settings=kafka_settings).height == 0
    assert kstream_lab.replay(topic, start=5, end=2, settings=kafka_settings).height == 0
    with pytest.raises(TopicError, match="unknown topic"):
        kstream_lab.replay("no-such-topic-xyz", settings=kafka_settings)
    with pytest.raises(TopicError, match=r"no partition\(s\) \[7\]"):
        kstream_lab.replay(topic, partitions=[7], settings=kafka_settings)
    with pytest.raises(RangeError):
        kstream_lab.replay(topic, start="yesterday-ish", settings=kafka_settings)


def test_retention_deleted_offsets_start_at_the_first_retained(kafka_settings, topic_factory, produce_json, caplog):
    topic = topic_factory("retained", partitions=1)
    produce_json(topic, [(0, T0 + i, order(i, T0 + i)) for i in range(20)])
    admin = make_admin(kafka_settings)  # keep a reference: its futures die with it
    fut = admin.delete_records([TopicPartition(topic, 0, 12)])
    next(iter(fut.values())).result(timeout=30)
    with caplog.at_level(logging.WARNING):
        df = kstream_lab.replay(topic, start=3, settings=kafka_settings)
    assert df["offset"].to_list() == list(range(12, 20))
    assert "offsets 3..11 were deleted by retention" in caplog.text
    assert kstream_lab.replay(topic, end=10, settings=kafka_settings).height == 0


def test_poison_tombstones_and_headers(kafka_settings, topic_factory, produce_json, caplog):
    topic = topic_factory("poison", partitions=1)
    produce_json(
        topic,
        [
            (0, T0, order(0, T0)),
            (0, T0 + 1, b"{not json"),
            (0, T0 + 2, None),
            (0, T0 + 3, b"[1,2]"),
            (0, T0 + 4, order(4, T0 + 4)),
        ],
        headers=[("trace", b"abc")],
    )
    with caplog.at_level(logging.WARNING):
        df = kstream_lab.replay(topic, value_format="json", settings=kafka_settings)
    assert df.select("offset", "order_id", "total_cents").rows() == [(0, "o0", 100), (2, None, None), (4, "o4", 104)]
    assert df["headers"][0].to_list() == [{"key": "trace", "value": b"abc"}]
    assert "skipped 2 undecodable record(s) as json; first at" in caplog.text and "[0]@1" in caplog.text
    with pytest.raises(DeserializationError, match=r"\[0\]@1"):
        kstream_lab.replay(topic, value_format="json", errors="raise", settings=kafka_settings)
    raw = kstream_lab.replay(topic, value_format="raw", settings=kafka_settings)
    assert raw["value"].to_list()[1:3] == [b"{not json", None]


def test_a_rare_field_needs_schema_and_a_misfit_value_is_skipped(kafka_settings, topic_factory, produce_json, caplog):
    """5,000 orders in one partition: one carries a coupon (too rare for the samples), one has text
    where the cents are integers. The misfit is one skipped record, not a failed read; the coupon
    is kept only when schema= names it."""
    topic = topic_factory("rare", partitions=1)
    records = [(0, T0 + i, order(i, T0 + i)) for i in range(5000)]
    records[4321] = (0, T0 + 4321, {**order(4321, T0 + 4321), "coupon": "SPRING"})
    records[4500] = (0, T0 + 4500, {**order(4500, T0 + 4500), "total_cents": "12.50 EUR"})
    produce_json(topic, records)
    with caplog.at_level(logging.WARNING):
        inferred = kstream_lab.replay(topic, value_format="json", settings=kafka_settings)
    assert inferred.height == 4999 and 4500 not in inferred["offset"].to_list()
    assert inferred["total_cents"].sum() == sum(100 + i for i in range(5000)) - 4600
    assert "coupon" not in inferred.columns  # one in 5,000: the samples do not see it
    assert "skipped 1 undecodable record(s) as json; first at" in caplog.text and "[0]@4500" in caplog.text
    assert "does not match the expected columns/types" in caplog.text
    schema = {
        "order_id": pl.String,
        "total_cents": pl.Int64,
        "timestamp": pl.Int64,
        "loyalty_tier": pl.String,
        "coupon": pl.String,
    }
    explicit = kstream_lab.replay(topic, schema=schema, settings=kafka_settings)
    assert explicit.height == 4999 and explicit["total_cents"].sum() == inferred["total_cents"].sum()
    assert explicit.filter(pl.col("coupon").is_not_null()).select("offset", "coupon").rows() == [(4321, "SPRING")]
    assert explicit.columns[-5:] == list(schema) and "kafka_timestamp" in explicit.columns


def test_avro_values_decode_in_bulk_with_auto_detection(kafka_settings, topic_factory, produce_json):
    from kstream_lab.pipeline_spec import TopicSpec
    from kstream_lab.schemas.serde import SerdeContext, value_serializer

    topic = topic_factory("avro", partitions=2)
    serialize = value_serializer(
        kafka_settings, TopicSpec(name=topic, partitions=2, value_format="avro", schema="EnrichedOrder")
    )
    rows = [
        {
            "order_id": f"o{i}",
            "customer_id": f"C{i:07d}",
            "total_cents": 1000 + i,
            "currency": "EUR",
            "item_count": 1,
            "timestamp": T0 + i,
            "loyalty_tier": "gold",
        }
        for i in range(300)
    ]
    produce_json(
        topic,
        [(i % 2, T0 + i, serialize(r, SerdeContext(topic))) for i, r in enumerate(rows)]
        + [(0, T0 + 999, b"\x00\x7f\xff\xff\x00garbage")],
    )
    df = kstream_lab.replay(topic, settings=kafka_settings)
    assert df.height == 300
    assert df["total_cents"].sum() == sum(r["total_cents"] for r in rows)
    assert df.filter(pl.col("partition") == 1)["order_id"].head(2).to_list() == ["o1", "o3"]


def test_both_fetch_paths_give_the_same_frame(kafka_settings, topic_factory):
    """Headers (several, a null value, none), null and non-UTF-8 keys, tombstones, three partitions
    filling together, a cut inside a chunk: the native columns equal confluent-kafka's exactly."""
    topic = topic_factory("paths", partitions=3)
    producer = make_producer(kafka_settings)
    for i in range(3_000):
        headers = [("trace", f"t{i}".encode()), ("empty", None)] if i % 7 == 0 else None
        key = None if i % 11 == 0 else b"\xff\xfe" if i % 13 == 0 else f"k{i}".encode()
        value = None if i % 17 == 0 else json.dumps(order(i, T0 + i)).encode()
        producer.produce(topic, key=key, value=value, partition=i % 3, timestamp=T0 + i, headers=headers)
    producer.flush(30)
    end = {0: 900, 1: 1_000, 2: 777}
    native = kstream_lab.replay(topic, end=end, settings=kafka_settings.model_copy(update={"replay_fetch": "native"}))
    python = kstream_lab.replay(topic, end=end, settings=kafka_settings.model_copy(update={"replay_fetch": "python"}))
    assert native.height == 900 + 1_000 + 777 and native.equals(python)
    assert native.filter(pl.col("offset") == 0)["headers"].to_list()[0] == [
        {"key": "trace", "value": b"t0"},
        {"key": "empty", "value": None},
    ]
    assert (
        native["key"].null_count()
        == python["key"].null_count()
        == len(range(0, 3_000, 11))
        - sum(
            1
            for i in range(0, 3_000, 11)
            if (i % 3 == 0 and i // 3 >= 900) or (i % 3 == 1 and i // 3 >= 1_000) or (i % 3 == 2 and i // 3 >= 777)
        )
    )
    assert native["total_cents"].sum() == python["total_cents"].sum()
