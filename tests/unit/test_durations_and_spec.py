import pytest

from kstream_lab.durations import parse_duration_ms
from kstream_lab.errors import ConfigError
from kstream_lab.pipeline_spec import load_pipeline
from tests.support.paths import ROOT


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("500ms", 500),
        ("10s", 10_000),
        ("15m", 900_000),
        ("1h30m", 5_400_000),
        ("2d", 172_800_000),
        (250, 250),
        ("42", 42),
    ],
)
def test_durations(text, ms):
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("bad", ["", "10x", "s10", "1h 3", -1, "1.5s"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration_ms(bad)


def test_orders_pipeline_loads():
    spec = load_pipeline(ROOT / "pipelines/orders.yaml")
    assert list(spec.topics) == [
        "orders_raw",
        "orders_enriched",
        "orders_dlq",
        "orders_dlq_redriven",
        "orders_late",
        "sales_aggregates",
        "order-aggregator-changelog",
    ]
    assert spec.topics["orders_raw"].partitions == 6
    assert spec.topics["order-aggregator-changelog"].cleanup_policy == "compact"
    assert spec.topics["orders_enriched"].partitions == spec.topics["order-aggregator-changelog"].partitions
    agg = spec.aggregation()
    assert (agg.window.size_ms, agg.window.grace_ms, agg.group_by) == (60_000, 10_000, ("loyalty_tier",))
    assert {k: (m.op, m.field) for k, m in agg.metrics.items()} == {
        "total_cents": ("sum", "total_cents"),
        "count": ("count", None),
    }


def test_unknown_key_names_file_line_and_key(tmp_path):
    text = (ROOT / "pipelines/orders.yaml").read_text()
    text = text.replace("min_compaction_lag_ms: 0", "min_compaction_lag: 0")
    f = tmp_path / "p.yaml"
    f.write_text(text)
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "min_compaction_lag:" in ln)
    with pytest.raises(ConfigError) as exc:
        load_pipeline(f)
    assert str(exc.value) == (
        f"{f}:{line}: topics.order-aggregator-changelog.min_compaction_lag: unknown key (fix the key(s) named above)"
    )


def test_bad_value_and_bad_yaml(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("pipeline: x\ntopics:\n  a:\n    partitions: -2\n")
    with pytest.raises(ConfigError, match=r"p.yaml:4: topics.a.partitions: Input should be greater than 0"):
        load_pipeline(f)
    f.write_text("pipeline: x\ntopics: [\n")
    with pytest.raises(ConfigError, match=r"p.yaml:\d+: not valid YAML"):
        load_pipeline(f)
    with pytest.raises(ConfigError, match="cannot read pipeline file"):
        load_pipeline(tmp_path / "missing.yaml")
