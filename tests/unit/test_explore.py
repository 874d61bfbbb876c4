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


def test_unique_keys_are_explained_and_skew_is_shown_by_customer(tmp_path):
    from kstream_lab.explore import explain_key_skew
    from kstream_lab.settings import Settings
    from tests.support.paths import ROOT

    settings = Settings(pipeline_file=ROOT / "pipelines" / "orders.yaml")
    frame = pl.DataFrame({"key": [f"o{i}" for i in range(5)], "customer_id": ["C1", "C2", "C1", "C1", "C3"]})
    skew = explain_key_skew(frame, "orders_enriched", settings=settings)
    assert skew.column == "customer_id"
    assert skew.frame.select("customer_id", "records").rows() == [("C1", 3), ("C2", 1), ("C3", 1)]
    assert skew.note.startswith("every order_id in the range is unique (5 records, 5 keys)")
    hot = pl.DataFrame({"key": ["a", "a", "a", "b"], "customer_id": ["C1"] * 4})
    by_key = explain_key_skew(hot, "orders_enriched", settings=settings, top=1)
    assert by_key.column == "key" and by_key.frame.select("key", "records").rows() == [("a", 3)]
    assert by_key.note == (
        "records per order_id (the topic's key; 2 distinct in 4 records), the top 1: "
        "the most frequent has 75.0% of the range"
    )
    assert explain_key_skew(hot, "unknown-topic", settings=settings).note.startswith("records per key ")
    assert "<p>every order_id" in skew._repr_html_()


def test_readable_shows_utc_times_and_exact_amounts_and_keeps_the_data():
    from decimal import Decimal

    from kstream_lab.display import readable

    frame = pl.DataFrame(
        {
            "window_start": [1_733_212_800_000, None],
            "total_cents": [1999, -5],
            "tier": ["gold", "none"],
            "count": [1, 2],
        }
    )
    shown = readable(frame)
    assert shown.columns == ["window_start", "total", "tier", "count"]
    assert [d.isoformat() if d else None for d in shown["window_start"]] == ["2024-12-03T08:00:00+00:00", None]
    assert shown["total"].to_list() == [Decimal("19.99"), Decimal("-0.05")]
    assert frame["total_cents"].to_list() == [1999, -5]  # the data keeps integer cents
    assert shown["count"].to_list() == [1, 2]
