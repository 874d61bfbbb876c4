"""``kstream_lab.tail`` against the real broker: a producer writes while the tail runs, and the tail
returns exactly the records written after it started, decoded, with their offsets, and leaves no
consumer group with offsets on the topic."""

from __future__ import annotations

import threading
import time

import pytest

import kstream_lab
from kstream_lab.errors import TopicError
from kstream_lab.kafka.admin import group_lags
from kstream_lab.kafka.read import snapshot_bounds
from kstream_lab.replay import tail as tail_mod
from kstream_lab.settings import Settings

N = 300
BEFORE = {0: 3, 1: 2}  # records already on the topic: from the end, the tail must not return them


def test_tail_from_the_end_returns_exactly_what_a_background_producer_wrote(
    kafka_settings: Settings, topic_factory, produce_json, monkeypatch
) -> None:
    topic = topic_factory("tail", partitions=2, value_format="json")
    old = [(p, 1_000 + i, {"i": -1 - i, "p": p}) for p, n in BEFORE.items() for i in range(n)]
    assert produce_json(topic, old, key_prefix="old") == 5

    started = threading.Event()
    resolve = tail_mod.resolve_range

    def resolved(*args, **kwargs):  # the tail has fixed its start: the producer may begin
        rng = resolve(*args, **kwargs)
        started.set()
        return rng

    monkeypatch.setattr(tail_mod, "resolve_range", resolved)
    failures: list[BaseException] = []

    def produce() -> None:
        try:
            assert started.wait(30), "the tail never started"
            now = int(time.time() * 1000)
            for chunk in range(6):  # 6 flushed chunks of 50, a few polls apart
                rows = [(i % 2, now + i, {"i": i, "p": i % 2}) for i in range(chunk * 50, chunk * 50 + 50)]
                produce_json(topic, rows, key_prefix=f"c{chunk}-")
                time.sleep(0.5)
        except BaseException as exc:
            failures.append(exc)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    out = kstream_lab.tail(topic, every="200ms", max_records=N, max_seconds=90, settings=kafka_settings)
    producer.join(30)
    assert not failures, failures
    assert out.height == N
    assert set(out.columns) >= {"topic", "partition", "offset", "timestamp", "key", "i", "p"}
    for p, before in BEFORE.items():
        part = out.filter(out["partition"] == p)
        assert part["offset"].to_list() == list(range(before, before + N // 2))
        assert part["i"].to_list() == list(range(p, N, 2))
        assert part["p"].to_list() == [p] * (N // 2)
    assert out["i"].min() == 0  # nothing from before the tail started
    highs = {p: b.end for p, b in snapshot_bounds(kafka_settings, topic).items()}
    assert highs == {p: b + N // 2 for p, b in BEFORE.items()}
    assert group_lags(kafka_settings, topic, highs) == []  # no group committed offsets on the topic


def test_tail_from_an_offset_stops_at_max_records_and_an_unknown_topic_is_one_line(
    kafka_settings: Settings, topic_factory, produce_json
) -> None:
    topic = topic_factory("tail", partitions=1, value_format="json")
    produce_json(topic, [(0, 1_000 + i, {"i": i}) for i in range(20)])
    out = kstream_lab.tail(topic, start=5, max_records=7, max_seconds=30, settings=kafka_settings)
    assert out["offset"].to_list() == list(range(5, 12)) and out["i"].to_list() == list(range(5, 12))
    with pytest.raises(TopicError) as info:
        kstream_lab.tail("no-such-topic-tail", max_seconds=1, settings=kafka_settings)
    assert "'no-such-topic-tail'" in str(info.value) and "\n" not in str(info.value)
