import polars as pl
import pytest

from kstream_lab.explore import key_skew, partition_skew, throughput


def test_key_skew_and_partition_skew_are_exact():
    frame = pl.DataFrame({"key": ["a"] * 6 + ["b"] * 3 + ["c"], "partition": [0] * 6 + [1] * 3 + [2]})
    skew = key_skew(frame, top=2)
    assert skew.select("key", "records").rows() == [("a", 6), ("b", 3)]
    assert skew["share"].to_list() == pytest.approx([0.6, 0.3])
    parts = partition_skew(frame)
    assert parts.select("partition", "records").rows() == [(0, 6), (1, 3), (2, 1)]
    assert parts["vs_mean"].to_list() == pytest.approx([1.8, 0.9, 0.3])


def test_throughput_buckets_epoch_ms_per_minute():
    ts = [0, 59_999, 60_000, 61_000, 125_000]
    out = throughput(pl.DataFrame({"timestamp": ts}), every="1m")
    assert out["records"].to_list() == [2, 2, 1]
    assert [d.isoformat() for d in out["interval"]] == [
        "1970-01-01T00:00:00+00:00",
        "1970-01-01T00:01:00+00:00",
        "1970-01-01T00:02:00+00:00",
    ]
    assert throughput(pl.DataFrame({"timestamp": []}, schema={"timestamp": pl.Int64})).height == 0
