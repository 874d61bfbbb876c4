import pytest

from kstream_lab.durations import parse_duration_ms
from kstream_lab.errors import ConfigError
from kstream_lab.pipeline_spec import WorkersConfig, load_pipeline
from tests.support.paths import ROOT
from tests.support.processes import run_cli


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


def test_a_changelog_partition_count_unlike_the_input_is_refused_by_every_command(tmp_path):
    """docs/semantics.md §2.1: one line naming file, line, key and both counts; the CLI exits 2."""
    text = (ROOT / "pipelines/orders.yaml").read_text()
    head, tail = text.split("  order-aggregator-changelog:\n")
    tail = tail.replace("partitions: 6", "partitions: 3", 1)
    f = tmp_path / "p.yaml"
    f.write_text(head + "  order-aggregator-changelog:\n" + tail)
    line = head.count("\n") + 2
    want = (
        f"{f}:{line}: topics.order-aggregator-changelog.partitions: the aggregator's changelog "
        "order-aggregator-changelog has 3 partitions but its input orders_enriched has 6; they must be equal "
        "(state for partition p lives in changelog partition p) (fix the key(s) named above)"
    )
    with pytest.raises(ConfigError) as exc:
        load_pipeline(f)
    assert str(exc.value) == want
    for args in (("topics", "apply", str(f)), ("worker", "aggregator", "--pipeline", str(f))):
        done = run_cli(*args, timeout=60)
        assert (done.returncode, done.stderr.splitlines(), done.stdout) == (2, [f"error: {want}"], ""), args


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


def test_orders_pipeline_workers_are_typed_at_load():
    workers = load_pipeline(ROOT / "pipelines/orders.yaml").workers
    assert isinstance(workers, WorkersConfig)
    assert (workers.enricher.request_timeout_ms, workers.enricher.breaker_reset_ms) == (1000, 3000)
    assert (workers.aggregator.aggregation, workers.aggregator.group_columns) == (
        "sales_per_minute",
        {"loyalty_tier": "tier"},
    )
    assert (workers.order_service.port, workers.sink.metrics_port, workers.sink.target) == (8600, 9403, None)
    svc = workers.order_service
    assert (svc.queue_max_orders, svc.delivery_timeout_ms, svc.retry_after_ms) == (10_000, 10_000, 1000)


def _broken(tmp_path, old: str, new: str) -> tuple[str, int]:
    """orders.yaml with ``old`` replaced by ``new``: the file and the line ``new`` is on."""
    text = (ROOT / "pipelines/orders.yaml").read_text()
    assert text.count(old) == 1, old
    text = text.replace(old, new)
    f = tmp_path / "p.yaml"
    f.write_text(text)
    return str(f), next(i for i, ln in enumerate(text.splitlines(), 1) if new.strip() == ln.split("#")[0].strip())


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("breaker_fail_max: 3", "breaker_failmax: 3", "workers.enricher.breaker_failmax: unknown key"),
        (
            "metrics_port: 9403",
            "metrics_port: lots",
            "workers.sink.metrics_port: Input should be a valid integer, unable to parse string as an integer",
        ),
        (
            "breaker_reset_ms: 3s",
            "breaker_reset_ms: 3 secs",
            "workers.enricher.breaker_reset_ms: Value error, not a duration: '3 secs'"
            " (use e.g. 500ms, 10s, 15m, 1h30m, 2d)",
        ),
        (
            "aggregation: sales_per_minute",
            "aggregation: sales_per_hour",
            "workers.aggregator.aggregation: no aggregation named 'sales_per_hour' (declared: sales_per_minute)",
        ),
        ("  sink:\n", "  sinc:\n", "workers.sinc: unknown key"),
        (
            "queue_max_orders: 10000",
            "queue_max_orders: 0",
            "workers.order_service.queue_max_orders: Input should be greater than 0",
        ),
    ],
    ids=["bad-key", "bad-value", "bad-duration", "unknown-aggregation", "unknown-worker", "no-queue"],
)
def test_a_bad_workers_entry_fails_the_load_naming_file_line_and_key(tmp_path, old, new, problem):
    f, line = _broken(tmp_path, old, new)
    with pytest.raises(ConfigError) as exc:
        load_pipeline(f)
    assert str(exc.value) == f"{f}:{line}: {problem} (fix the key(s) named above)"
