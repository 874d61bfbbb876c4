"""Network faults between the workers and Kafka, through Toxiproxy, while orders are still produced.

The module's own broker has two extra client listeners, each advertising the port of a Toxiproxy
proxy in front of it (``KSTREAM_BROKER_EXTRA_LISTENERS``): Kafka tells a client the advertised
address of the listener it connected on, so the enricher and the sink, bootstrapped through proxy
``kafka``, keep coming back through it, the aggregator through ``kafka-aggregator`` alone, and the
test's own producer and readers go straight to ``broker_port``. Each scenario switches toxics on a
seeded schedule and ends with the exact checks of the pipeline tests plus `kstream-lab backtest`.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kstream_lab.settings import Settings
from tests.support.chaos import ChaosKafka
from tests.support.checks import assert_backtest_matches, assert_exact_and_once
from tests.support.kafka_wire import END_TXN, RequestTap
from tests.support.paths import free_port
from tests.support.pipeline import BackgroundProducer, Pipeline, write_pipeline
from tests.support.toxiproxy import STREAMS, Proxy, Toxiproxy

WORKERS = ("customer-service", "enricher", "aggregator", "sink")


@dataclass
class Net:
    settings: Settings  # direct to the broker: the test's producer, readers and the back-test
    workers: Proxy  # the enricher's and the sink's way to Kafka
    aggregator: Proxy  # the aggregator's alone
    tap: RequestTap  # in front of ``aggregator``: which requests its cuts met

    def env(self, port: int | None = None) -> dict[str, str]:
        """``KSTREAM_*`` for a process of this module (through the proxy on ``port``, or direct): every
        variable the session fixture may have exported is overridden."""
        bootstrap = f"127.0.0.1:{port}" if port else self.settings.bootstrap
        return {
            "KSTREAM_BOOTSTRAP_SERVERS": bootstrap,
            "KSTREAM_SCHEMA_REGISTRY_URL": self.settings.registry_url,
            "KSTREAM_DATA_DIR": str(self.settings.data_dir),
        }


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    """Toxiproxy, then a broker advertising its two proxies (the aggregator's behind a request tap),
    then a registry, all on free ports."""
    home = tmp_path_factory.mktemp("kstream-chaos")
    toxiproxy = Toxiproxy(home, seed=17)
    toxiproxy.up()
    workers_at, aggregator_at = free_port(), free_port()
    proxies = {
        "kafka": toxiproxy.proxy("kafka", f"127.0.0.1:{workers_at}"),
        "kafka-aggregator": toxiproxy.proxy("kafka-aggregator", f"127.0.0.1:{aggregator_at}"),
    }
    tap = RequestTap(("127.0.0.1", proxies["kafka-aggregator"].port))
    try:
        kafka = ChaosKafka.start(
            home,
            broker_extra_listeners={
                workers_at: f"127.0.0.1:{proxies['kafka'].port}",
                aggregator_at: f"127.0.0.1:{tap.port}",
            },
        )
        try:
            yield Net(kafka.settings, proxies["kafka"], proxies["kafka-aggregator"], tap)
        finally:
            kafka.stop()
    finally:
        tap.close()
        toxiproxy.down()


@pytest.fixture
def pipe(net: Net, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(net.settings, write_pipeline(tmp_path), tmp_path)
    p.set_window("5s", "3s")  # event time follows the rate: several closed windows per partition
    p.create_topics()
    yield p
    p.stop_all()
    net.workers.clear()
    net.aggregator.clear()
    p.delete_topics()


def run_with_faults(
    net: Net,
    pipe: Pipeline,
    count: int,
    rate: float,
    seed: int,
    faults: Callable[[random.Random, float], None],
    *,
    ready: Callable[[], None] | None = None,
) -> None:
    """Start the workers (each through its proxy), wait for ``ready()`` if given, start the producer,
    run ``faults(rng, run_s)`` while orders are produced, then every exact check: no worker exited,
    sink == truth to the cent, DLQ == poison, late == late, read_committed exactly once, and the
    back-test exits 0."""
    for name in WORKERS:
        pipe.start(name, env=net.env(net.tap.port if name == "aggregator" else net.workers.port))
    if ready is not None:
        ready()
    producer = BackgroundProducer(pipe, count, rate, seed=seed)
    producer.start()
    faults(random.Random(seed), count / rate)
    assert producer.is_alive(), "the faults did not end while orders were still being produced"
    net.workers.clear()
    net.aggregator.clear()
    assert_exact_and_once(pipe, producer, "after the network faults")
    assert all(proc.poll() is None for proc in pipe.procs.values()), {k: p.poll() for k, p in pipe.procs.items()}
    # the sink matched: the aggregator's finals and its input offsets commit in one transaction
    assert_backtest_matches(pipe, net.env(), timeout=120, caught_up_s=None)


def at(t0: float, offset: float) -> None:
    """Sleep until ``offset`` s after ``t0``."""
    time.sleep(max(0.0, offset - (time.monotonic() - t0)))


def test_latency_spikes(net: Net, pipe: Pipeline) -> None:
    """Three seeded spikes of 200-800 ms (with jitter) each way, on both proxies, for 2-3 s each."""

    def faults(rng: random.Random, run_s: float) -> None:
        t0 = time.monotonic()
        for start in sorted(rng.uniform(0.1, 0.7) * run_s for _ in range(3)):
            at(t0, start)
            latency = rng.randint(200, 800)
            jitter = latency // 4
            with (
                net.workers.toxic("latency", STREAMS, latency=latency, jitter=jitter),
                net.aggregator.toxic("latency", STREAMS, latency=latency, jitter=jitter),
            ):
                time.sleep(rng.uniform(2, 3))

    run_with_faults(net, pipe, 30_000, 2500.0, 41, faults)


def test_connections_reset_mid_request(net: Net, pipe: Pipeline) -> None:
    """Every 0.4-1.2 s for most of the run, one or both proxies reset their connections (TCP RST) on
    the next bytes of a request (upstream) or of its answer (downstream)."""

    def faults(rng: random.Random, run_s: float) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 0.7 * run_s:
            proxies = rng.choice([(net.workers,), (net.aggregator,), (net.workers, net.aggregator)])
            stream = rng.choice(STREAMS)
            names = [(proxy, proxy.add("reset_peer", stream, timeout=0)) for proxy in proxies]
            time.sleep(rng.uniform(0.05, 0.3))
            for proxy, name in names:
                proxy.remove(name)
            time.sleep(rng.uniform(0.4, 1.2))

    run_with_faults(net, pipe, 30_000, 2500.0, 43, faults)


def test_bandwidth_limits(net: Net, pipe: Pipeline) -> None:
    """Twice, for 4-6 s: the enricher's and sink's fetches and the aggregator's traffic both ways
    squeezed to 16-64 KB/s (the orders alone are a few hundred KB/s)."""

    def faults(rng: random.Random, run_s: float) -> None:
        t0 = time.monotonic()
        for start in (rng.uniform(0.1, 0.3) * run_s, rng.uniform(0.45, 0.6) * run_s):
            at(t0, start)
            with (
                net.workers.toxic("bandwidth", ("downstream",), rate=rng.randint(16, 64)),
                net.aggregator.toxic("bandwidth", STREAMS, rate=rng.randint(16, 64)),
            ):
                time.sleep(rng.uniform(4, 6))

    run_with_faults(net, pipe, 30_000, 2500.0, 47, faults)


def test_a_20s_partition_of_the_aggregator_alone(net: Net, pipe: Pipeline) -> None:
    """Everything the aggregator sends or is sent is dropped for 20 s (connections stay open, nothing
    answers: a partition, not a refusal) while the enricher keeps writing orders_enriched."""
    grew: list[int] = []

    def faults(rng: random.Random, run_s: float) -> None:
        time.sleep(rng.uniform(0.1, 0.2) * run_s)
        with net.aggregator.toxic("timeout", STREAMS, timeout=0):
            before = end_offsets(pipe, "orders_enriched")
            time.sleep(20)
            grew.append(end_offsets(pipe, "orders_enriched") - before)

    run_with_faults(net, pipe, 36_000, 1200.0, 53, faults)
    assert grew[0] > 15_000, f"the enricher wrote only {grew[0]} offsets during the aggregator's partition"


def test_connection_cut_while_commit_transaction_is_in_flight(net: Net, pipe: Pipeline) -> None:
    """The indefinite case: 12 times, at seeded moments, the aggregator's next EndTxn request
    (``commit_transaction``) is let through to the broker and the connection is reset when the answer
    comes back: the broker committed, the client cannot know. The request tap switches the downstream
    reset on just before it passes the EndTxn on, and counts the EndTxn requests in flight when their
    connection closed. The worker must resolve each (librdkafka retries the EndTxn; the broker
    answers the retry of a committed transaction as committed) without losing or doubling anything.
    Orders start once the enricher and the aggregator own their partitions, and the schedule with
    the aggregator's first EndTxn: on a loaded machine their start-up took 10 s of a 30 s run."""
    armed, toxics = threading.Event(), queue.Queue()
    first = net.tap.sent[END_TXN]
    log: list[str] = []

    def on_request(api_key: int) -> None:
        if api_key == END_TXN and armed.is_set():
            armed.clear()
            toxics.put(net.aggregator.add("reset_peer", "downstream", timeout=0))

    def faults(rng: random.Random, _run_s: float) -> None:
        t0 = time.monotonic()
        while net.tap.sent[END_TXN] == first and time.monotonic() - t0 < 60:
            time.sleep(0.05)
        log.append(f"{time.monotonic() - t0:5.1f}s: the aggregator's first EndTxn")
        for i in range(12):
            time.sleep(rng.uniform(0.3, 1.0))
            armed.set()
            try:
                toxic = toxics.get(timeout=5)
            except queue.Empty:
                armed.clear()
                log.append(f"{time.monotonic() - t0:5.1f}s: cut {i + 1}: no EndTxn within 5 s")
                continue
            time.sleep(rng.uniform(0.05, 0.2))
            net.aggregator.remove(toxic)
            log.append(f"{time.monotonic() - t0:5.1f}s: cut {i + 1}")

    def ready() -> None:
        pipe.wait_for(
            lambda: (
                "assigned partitions" in pipe.log("enricher")
                and pipe.log("aggregator").count("restored partition") >= 6
            ),
            timeout=90,
            what="the enricher and the aggregator to own their partitions",
        )

    sent, cut = net.tap.sent[END_TXN], net.tap.cut[END_TXN]
    net.tap.on_request = on_request
    try:
        run_with_faults(net, pipe, 80_000, 2000.0, 59, faults, ready=ready)
    finally:
        net.tap.on_request = None
        print("\n".join(log))
    sent, cut = net.tap.sent[END_TXN] - sent, net.tap.cut[END_TXN] - cut
    print(f"EndTxn requests: {sent} sent, {cut} cut in flight")
    assert cut >= 6, f"only {cut} of {sent} EndTxn requests met a reset"


def end_offsets(pipe: Pipeline, role: str) -> int:
    from kstream_lab.kafka.read import snapshot_bounds

    return sum(b.end for b in snapshot_bounds(pipe.settings, pipe.topic(role)).values())
