"""Faults for real: SIGKILLed workers, a customer-service outage, SIGTERM of every process.

Kills and outages happen while orders are still being produced (a background thread at a fixed
rate), so they land mid-run; the schedule is drawn from a seeded RNG so a failure is reproducible.
"""

from __future__ import annotations

import random
import re
import time

import httpx
import polars as pl

from kstream_lab.generator.customers import UNKNOWN_TIER
from kstream_lab.kafka.read import open_transaction_partitions
from tests.support.checks import assert_exact_and_once
from tests.support.pipeline import (
    ORDERS,
    BackgroundProducer,
    Pipeline,
    expected_rows,
    sink_by_key,
    sink_matches,
)


def metric(pipe: Pipeline, worker: str, name: str, labels: str = "") -> float | None:
    port = getattr(pipe.workers, worker).metrics_port
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    m = re.search(rf"^{name}\{{[^}}]*{labels}[^}}]*\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_sigkill_aggregator_twice_and_enricher_once(live_pipeline: Pipeline) -> None:
    pipe = live_pipeline
    rng = random.Random(4)
    rate = 2500.0  # event time follows the rate: 5 s windows give several closed windows per partition
    pipe.set_window("5s", "3s")
    producer = BackgroundProducer(pipe, ORDERS, rate)
    for name in ("customer-service", "enricher", "aggregator", "sink"):
        pipe.start(name)
    producer.start()
    run_s = ORDERS / rate
    schedule = sorted(
        [
            (rng.uniform(0.15, 0.35) * run_s, "aggregator"),
            (rng.uniform(0.4, 0.6) * run_s, "enricher"),
            (rng.uniform(0.65, 0.85) * run_s, "aggregator"),
        ]
    )
    t0 = time.monotonic()
    for at, name in schedule:
        time.sleep(max(0.0, at - (time.monotonic() - t0)))
        pipe.kill(name)
        pipe.start(name)
    assert_exact_and_once(pipe, producer, "after kills")
    assert "restored partition" in pipe.log("aggregator")


def test_partitions_move_between_two_aggregators(live_pipeline: Pipeline) -> None:
    """A second aggregator joins mid-run (partitions move to it, state restored from the changelog),
    then the first one is stopped (they move back): results are still exact, nothing duplicated."""
    pipe = live_pipeline
    rate = 2500.0
    pipe.set_window("5s", "3s")
    producer = BackgroundProducer(pipe, ORDERS, rate, seed=13)
    for name in ("customer-service", "enricher", "aggregator", "sink"):
        pipe.start(name)
    producer.start()
    run_s = ORDERS / rate
    time.sleep(0.3 * run_s)
    pipe.start("aggregator", instance=1)
    time.sleep(0.3 * run_s)
    code, seconds = pipe.terminate("aggregator")
    assert code == 0 and seconds < 10
    assert_exact_and_once(pipe, producer, "after rebalances")
    second = pipe.log("aggregator-1")
    assert "revoked partitions" in second and second.count("assigned partitions") >= 2


def test_a_twin_with_the_same_transactional_id_fences_the_first(live_pipeline: Pipeline) -> None:
    """A second process started with the same instance number (same transactional id) fences the
    first: its next transactional call fails fatally and it exits with code 3; the twin takes over
    and the results stay exact, nothing duplicated."""
    pipe = live_pipeline
    rate, count = 2500.0, 30_000
    pipe.set_window("5s", "3s")
    producer = BackgroundProducer(pipe, count, rate, seed=17)
    for name in ("customer-service", "enricher", "aggregator", "sink"):
        pipe.start(name)
    producer.start()
    time.sleep(0.3 * count / rate)
    pipe.start("aggregator", key="aggregator-twin", extra=["--metrics-port", "0"])
    assert pipe.procs.pop("aggregator").wait(timeout=90) == 3, pipe.log("aggregator")[-2000:]
    assert re.search(r"fatal: .*fenced", pipe.log("aggregator"), re.I), pipe.log("aggregator")[-2000:]
    assert "Traceback" not in pipe.log("aggregator")
    assert_exact_and_once(pipe, producer, "after fencing")


def test_customer_service_outage_opens_and_closes_the_breaker(live_pipeline: Pipeline) -> None:
    pipe = live_pipeline
    cs = f"http://127.0.0.1:{pipe.workers.customer_service.port}"
    count, rate = 48_000, 2400.0  # 20 s of traffic: the outage runs from t=3 s to t=13 s
    producer = BackgroundProducer(pipe, count, rate, seed=5)
    pipe.start("customer-service")
    pipe.start("enricher")
    pipe.start("aggregator")
    pipe.start("sink")
    producer.start()
    time.sleep(3)
    httpx.put(f"{cs}/admin/faults", json={"down": True}).raise_for_status()
    opened = pipe.wait_for(
        lambda: metric(pipe, "enricher", "kstream_breaker_state") == 2,
        timeout=8,
        what="the breaker to open",
        interval=0.1,
    )
    time.sleep(10 - 0.1)
    httpx.put(f"{cs}/admin/faults", json={"down": False}).raise_for_status()
    closed = pipe.wait_for(
        lambda: metric(pipe, "enricher", "kstream_breaker_state") == 0,
        timeout=15,
        what="the breaker to close after recovery",
        interval=0.2,
    )
    assert opened and closed
    truth = producer.truth()

    enriched = pipe.decoded("orders_enriched")
    non_poison = truth.filter(pl.col("kind") != "poison")
    assert len(enriched) == non_poison.height and len({key for key, _v in enriched}) == non_poison.height
    tiers = {key.decode(): value["loyalty_tier"] for key, value in enriched}
    true_tier = dict(non_poison.select("order_id", "tier").iter_rows())
    unknown = [oid for oid, t in tiers.items() if t == UNKNOWN_TIER]
    assert len(unknown) > 0
    assert all(t == true_tier[oid] for oid, t in tiers.items() if t != UNKNOWN_TIER)

    window = pipe.spec.aggregation().window
    expected = expected_rows(truth, window.size_ms, window.grace_ms, tier_of=tiers)
    pipe.wait_for(lambda: sink_matches(pipe, expected), timeout=120, what="the sink to match (with unknown tiers)")
    got = sink_by_key(pipe.sink_rows())
    assert sum(v["count"] for v in got.values()) == truth.filter(pl.col("kind") == "ok").height
    assert sum(v["total_cents"] for k, v in got.items() if k[1] == UNKNOWN_TIER) > 0
    assert "closed -> open" in pipe.log("enricher") and "-> closed" in pipe.log("enricher")


def test_sigterm_each_worker_exits_zero_without_open_transactions(live_pipeline: Pipeline) -> None:
    pipe = live_pipeline
    producer = BackgroundProducer(pipe, 40_000, 5000.0, seed=9)
    for name in ("customer-service", "order-service", "enricher", "aggregator", "sink"):
        pipe.start(name)
    producer.start()
    pipe.wait_for(lambda: len(pipe.sink_rows()) > 0, timeout=60, what="the pipeline to produce results")
    outputs = {
        "aggregator": ["sales_aggregates", "orders_late", "order-aggregator-changelog"],
        "enricher": ["orders_enriched", "orders_dlq"],
    }
    for name in ("aggregator", "enricher", "sink", "order-service", "customer-service"):
        code, seconds = pipe.terminate(name)
        assert code == 0, pipe.log(name)[-2000:]
        assert seconds < 10
        for role in outputs.get(name, []):
            assert open_transaction_partitions(pipe.settings, pipe.topic(role), list(range(6))) == [], (name, role)
    for name in ("aggregator", "enricher", "sink"):
        assert f"{name} stopped cleanly" in pipe.log(name)
    producer.truth()
