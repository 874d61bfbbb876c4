"""The Dask back-test's refusals, before any task runs (no broker, no cluster)."""

from __future__ import annotations

import pytest

from kstream_lab.aggregations.spec import AggregationSpec
from kstream_lab.errors import ConfigError
from kstream_lab.replay import dask_backtest
from kstream_lab.replay.reader import PartitionRange, ReplayRange
from kstream_lab.settings import Settings
from tests.support.paths import ROOT, free_port

pytestmark = pytest.mark.unit

RNG = ReplayRange("orders_enriched", {0: PartitionRange(0, 0, 10, 0, 10)}, 0)


def spec() -> AggregationSpec:
    from kstream_lab.pipeline_spec import load_pipeline

    return load_pipeline(ROOT / "pipelines/orders.yaml").aggregation()


@pytest.mark.parametrize("cluster", ["", "   ", 8786])
def test_a_value_that_is_no_address_names_the_option(cluster) -> None:
    with pytest.raises(ConfigError, match=r"--dask: not a scheduler address") as err:
        dask_backtest.run_on_cluster(cluster, Settings(), RNG, ["partition"], [spec()])
    assert "tcp://127.0.0.1:8786" in (err.value.hint or "")


def test_a_scheduler_that_does_not_answer_is_named_with_its_address(monkeypatch) -> None:
    monkeypatch.setattr(dask_backtest, "CONNECT_TIMEOUT_S", 1)
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(ConfigError, match=rf"the Dask scheduler at {address} did not answer within 1 s") as err:
        dask_backtest.run_on_cluster(address, Settings(), RNG, ["partition"], [spec()])
    assert "dask scheduler" in (err.value.hint or "")
