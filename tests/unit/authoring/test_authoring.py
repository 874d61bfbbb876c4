"""A new aggregation from a cell: parsing against the deployed pipeline, the pipeline-file form that
loads back equal, and the saved copy the aggregator can be pointed at."""

from __future__ import annotations

import pytest
import yaml

from kstream_lab.authoring import aggregation, save_aggregation, spec_to_yaml
from kstream_lab.errors import ConfigError
from kstream_lab.pipeline_spec import load_pipeline
from tests.support.paths import ROOT

pytestmark = pytest.mark.unit

PIPELINE = ROOT / "pipelines/orders.yaml"
BIG_ORDERS = """
source: orders_enriched
window: {type: hopping, size: 10m, advance: 1m, grace: 30s}
filter: total_cents >= 10000
fields: {big: "total_cents >= 50000"}
group_by: [customer_id, big]
metrics:
  total_cents: {sum: total_cents}
  orders: {count: "*"}
  avg_cents: {mean: total_cents}
  customers: {count_distinct: customer_id}
"""


def test_a_cell_definition_becomes_a_spec_checked_against_the_pipeline() -> None:
    spec = aggregation(BIG_ORDERS, name="big_orders", pipeline=load_pipeline(PIPELINE))
    assert (spec.name, spec.window.type, spec.window.size_ms, spec.window.advance_ms, spec.window.grace_ms) == (
        "big_orders",
        "hopping",
        600_000,
        60_000,
        30_000,
    )
    assert spec.group_by == ("customer_id", "big") and list(spec.metrics) == [
        "total_cents",
        "orders",
        "avg_cents",
        "customers",
    ]


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ("source: [unclosed", r"aggregation 'x': not valid YAML \(line 1 of the definition\)"),
        ("- a list", r"aggregation 'x': expected a mapping"),
        (BIG_ORDERS.replace("source: orders_enriched", "source: nope"), r"source: no topic named 'nope'"),
        (BIG_ORDERS.replace("advance: 1m", "advance: 20m"), r"aggregation 'x': window: "),
        (BIG_ORDERS + "colour: red\n", r"aggregation 'x': colour: unknown key"),
        (BIG_ORDERS.replace("{mean: total_cents}", "{median: total_cents}"), r"metrics.avg_cents.median: unknown key"),
    ],
)
def test_a_bad_definition_is_one_line_naming_the_key(definition, message) -> None:
    with pytest.raises(ConfigError, match=message):
        aggregation(definition, name="x", pipeline=load_pipeline(PIPELINE))


@pytest.mark.parametrize(
    "window",
    [
        "{size: 60s, grace: 10s}",
        "{type: hopping, size: 5m, advance: 1m, grace: 0s}",
        "{type: sliding, size: 90s, grace: 1500ms}",
        "{type: session, gap: 30s, grace: 2h}",
    ],
)
def test_the_pipeline_file_form_loads_back_equal(window) -> None:
    pipeline = load_pipeline(PIPELINE)
    spec = aggregation(
        BIG_ORDERS.replace("{type: hopping, size: 10m, advance: 1m, grace: 30s}", window), pipeline=pipeline
    )
    again = aggregation(yaml.safe_dump(spec_to_yaml(spec)), pipeline=pipeline)
    assert again == spec


def test_the_saved_copy_adds_it_and_points_the_aggregator_at_it(tmp_path) -> None:
    spec = aggregation(BIG_ORDERS, name="big_orders", pipeline=load_pipeline(PIPELINE))
    out = save_aggregation(spec, PIPELINE, tmp_path / "orders_big.yaml")
    saved = load_pipeline(out)
    assert saved.workers.aggregator.aggregation == "big_orders" and saved.aggregation("big_orders") == spec
    assert set(saved.aggregations) == {"sales_per_minute", "big_orders"}
    assert (
        saved.topics == load_pipeline(PIPELINE).topics
        and saved.workers.enricher == load_pipeline(PIPELINE).workers.enricher
    )
    kept = save_aggregation(spec, PIPELINE, tmp_path / "kept.yaml", deploy=False)
    assert load_pipeline(kept).workers.aggregator.aggregation == "sales_per_minute"  # the deployed one stays
    with pytest.raises(ConfigError, match="is the deployed pipeline file"):
        save_aggregation(spec, PIPELINE, PIPELINE)
    with pytest.raises(ConfigError, match="already declares an aggregation named 'big_orders'"):
        save_aggregation(spec, out, tmp_path / "twice.yaml")
