"""The broker SIGKILLed twice mid-run and restarted: every worker rides it out, results exact.

The outages land while orders are still being produced (a background producer at a fixed rate) at
times drawn from a seeded RNG, so a failure is reproducible. Nothing is restarted by the test but
the broker: a worker that exits fails the test (``wait_for`` checks every process).
"""

from __future__ import annotations

import random
import time

from tests.support.chaos import ChaosKafka
from tests.support.checks import assert_backtest_matches, assert_exact_and_once
from tests.support.pipeline import BackgroundProducer, Pipeline

WORKERS = ("customer-service", "enricher", "aggregator", "sink")


def test_broker_sigkilled_twice_mid_run(chaos_kafka: ChaosKafka, chaos_pipeline: Pipeline) -> None:
    pipe, rng = chaos_pipeline, random.Random(17)
    count, rate = 50_000, 2_500.0  # 20 s of orders; event time follows the rate: 5 s windows close
    pipe.set_window("5s", "3s")
    # its last records wait out the second crash: a restart took up to 65 s on the loaded 2 cores
    producer = BackgroundProducer(pipe, count, rate, seed=23, flush_timeout_s=300)
    for name in WORKERS:
        pipe.start(name)
    producer.start()
    run_s = count / rate
    outages = [(rng.uniform(0.2, 0.3) * run_s, rng.uniform(2, 5)), (rng.uniform(0.55, 0.65) * run_s, rng.uniform(2, 5))]
    t0 = time.monotonic()
    for at, down_s in outages:
        time.sleep(max(0.0, at - (time.monotonic() - t0)))
        assert producer.is_alive(), "the outage must land while orders are still being produced"
        print(f"{time.monotonic() - t0:6.1f}s: SIGKILL broker pid {chaos_kafka.kill_broker()}, down {down_s:.1f}s")
        time.sleep(down_s)
        chaos_kafka.restart_broker()
        print(f"{time.monotonic() - t0:6.1f}s: broker answers again")

    assert_exact_and_once(pipe, producer, "after two broker crashes")
    assert all(proc.poll() is None for proc in pipe.procs.values()), "a worker exited"
    assert_backtest_matches(pipe, chaos_kafka.env, timeout=180, caught_up_s=120)
