"""The replay cache's planning (kept segments and holes) and its size cap, without a broker."""

from __future__ import annotations

import json

import polars as pl
import pytest

from kstream_lab.replay.cache import CacheEntry, Segment, Step, enforce_cap, entries, flush, plan
from kstream_lab.settings import Settings

pytestmark = pytest.mark.unit


def seg(start: int, end: int) -> Segment:
    return Segment(0, start, end, end - start, f"{start}-{end}", 0)


def test_plan_covers_the_range_with_segments_and_holes_in_offset_order() -> None:
    a, b, c = seg(10, 20), seg(30, 40), seg(35, 60)
    assert plan([], 0, 5) == [Step(0, 5)]
    assert plan([a], 0, 50) == [Step(0, 10), Step(10, 20, a), Step(20, 50)]
    assert plan([c, a, b], 12, 55) == [Step(12, 20, a), Step(20, 30), Step(30, 40, b), Step(40, 55, c)]
    assert plan([a], 12, 18) == [Step(12, 18, a)]
    assert plan([a], 20, 30) == [Step(20, 30)]  # a segment's end is exclusive
    assert plan([a], 7, 7) == []


def test_the_cap_evicts_least_recently_used_segments_first(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    frame = pl.DataFrame({"offset": list(range(1000)), "v": [b"x" * 50] * 1000})
    entry = CacheEntry(settings, {"topic": "t", "n": 1})
    with entry.locked():
        for i in range(3):
            entry.add(0, i * 1000, (i + 1) * 1000, frame, {})
        assert entry.segments == {} and [s.start for s in entry.kept(0)] == [0, 1000, 2000]  # still being written
    flush()
    with entry.locked():
        by_start = {s.start: s for s in entry.segments[0]}
        by_start[0].used, by_start[1000].used, by_start[2000].used = 3.0, 1.0, 2.0
    size = entries(settings)[0].bytes
    capped = settings.model_copy(update={"replay_cache_max_bytes": size * 2 // 3})
    assert enforce_cap(capped) > 0
    with entry.locked():
        assert sorted(s.start for s in entry.segments[0]) == [0, 2000]  # the one used longest ago went
    assert len(list(entry.dir.glob("*.arrow"))) == 2


def test_a_topic_whose_identity_is_denied_is_read_without_the_cache(tmp_path, monkeypatch, caplog) -> None:
    """A principal without DESCRIBE_CONFIGS may still READ: the read goes straight to the broker,
    nothing is kept, and one warning names the topic and the reason."""
    from kstream_lab.kafka.denials import refusal
    from kstream_lab.replay import cache
    from kstream_lab.replay.reader import PartitionRange, ReplayRange

    def denied(settings, topic):
        raise refusal(settings, "DESCRIBE_CONFIGS", "topic", topic, "Broker: Topic authorization failed")

    frame = pl.DataFrame({"offset": [0, 1, 2]})
    monkeypatch.setattr(cache, "topic_identity", denied)
    monkeypatch.setattr(cache, "read_range", lambda settings, rng, **read: frame)
    settings = Settings(data_dir=tmp_path, sasl_username="analyst")
    rng = ReplayRange("t-denied", {0: PartitionRange(0, 0, 3, 0, 3)}, 0)
    for _ in range(2):
        got = cache.read_cached(settings, rng, value_format="avro", errors="raise", batch_size=100, schema=None)
        assert got.equals(frame)
    assert entries(settings) == []
    warned = [r.getMessage() for r in caplog.records if "without the cache" in r.getMessage()]
    assert warned == [
        "replay cache: t-denied is read without the cache: User:analyst may not DESCRIBE_CONFIGS topic t-denied"
        f" on {settings.bootstrap} (Broker: Topic authorization failed)"
        " (grant it in the pipeline file and run `kstream-lab acls apply`, or use another principal)"
    ]


def test_entries_an_earlier_version_kept_are_removed_when_the_cap_is_enforced(tmp_path) -> None:
    from kstream_lab.replay.cache import CACHE_FORMAT, cache_root

    settings = Settings(data_dir=tmp_path)
    old = cache_root(settings) / "0123456789abcdef0123"
    old.mkdir(parents=True)
    (old / "key.json").write_text(json.dumps({"format": CACHE_FORMAT - 1, "topic": "t"}))
    (old / "p0-0-10-abcdef.parquet").write_bytes(b"x" * 100)
    enforce_cap(settings)
    assert not old.exists()
