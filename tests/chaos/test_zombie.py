"""Zombie fencing: an aggregator paused (SIGSTOP) past its session timeout, then resumed (SIGCONT).

Two aggregator instances (different transactional ids) share the group. Pausing instance 0 longer
than the session timeout (LoopConfig.session_timeout_ms, 6 s) moves its partitions to instance 1,
which restores their state from the changelog and carries on while orders are still produced. The
zombie wakes up believing it still owns them, with a transaction open. Where the pause caught it
decides what must happen (KIP-447):

- **before its offsets reached the group coordinator**: it sends them with the group generation it
  had; the coordinator refuses them (stale generation), the transaction aborts, and nothing it wrote
  becomes visible to a read_committed reader. Then it rejoins the group as a new member.
- **after its offsets reached the coordinator, before the commit**: nothing can fence it (the
  offsets were valid when sent) and its commit goes through. The new owner must therefore wait for
  those pending offsets (a read_committed consumer's offset fetch requires stable offsets) and
  resume after them, with the zombie's state changes in its restored state.

A pause landing between two transactions only shows up as lost partitions, so each test stops the
zombie at seeded moments until the broker shows it in the wanted state (a transaction open on one of
its changelog partitions; its offsets pending or not), undoing each stop that finds otherwise at once.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition

from kstream_lab.kafka.clients import make_admin, make_consumer
from tests.support.chaos import ChaosKafka
from tests.support.checks import assert_backtest_matches, assert_exact_and_once
from tests.support.pipeline import BackgroundProducer, Pipeline

WORKERS = ("customer-service", "enricher", "aggregator", "sink")
ALL = "[0, 1, 2, 3, 4, 5]"  # the pipeline's six partitions of orders_enriched
FENCED = re.compile(r"aborting transaction and rewinding: send_offsets_to_transaction: .*(generation|member)", re.I)


def test_a_zombie_paused_before_sending_its_offsets_is_fenced(
    chaos_kafka: ChaosKafka, chaos_pipeline: Pipeline
) -> None:
    pause = _pause_past_the_session_timeout(chaos_kafka, chaos_pipeline, pending=False, seed=447)
    assert FENCED.search(pause.zombie_log), pause.zombie_log[-3000:]  # late offsets refused, transaction aborted
    assert re.search(r"lost partitions|revoked partitions", pause.zombie_log), pause.zombie_log[-3000:]  # rejoined


def test_a_zombie_paused_after_sending_its_offsets_commits_and_the_new_owner_waits(
    chaos_kafka: ChaosKafka, chaos_pipeline: Pipeline
) -> None:
    pause = _pause_past_the_session_timeout(chaos_kafka, chaos_pipeline, pending=True, seed=448)
    assert not FENCED.search(pause.zombie_log), pause.zombie_log[-3000:]  # offsets already in: it commits
    assert re.search(r"lost partitions|revoked partitions", pause.zombie_log), pause.zombie_log[-3000:]
    # the new owner restored the zombie's partition only after the zombie woke (and committed)
    p = pause.open_on[0]
    restored = re.search(rf'"ts": "([^"]+)Z"[^\n]*restored partition {p}:', pause.owner_log)
    assert restored, pause.owner_log[-3000:]
    at = datetime.fromisoformat(restored.group(1)).replace(tzinfo=UTC)
    assert at > pause.woke_at, f"partition {p} restored at {at}, before the zombie woke at {pause.woke_at}"


@dataclass
class Pause:
    open_on: list[int]  # the zombie's changelog partitions with its transaction open
    woke_at: datetime  # when it was sent SIGCONT
    zombie_log: str  # its log since the pause
    owner_log: str  # instance 1's log since the pause


def _pause_past_the_session_timeout(chaos_kafka: ChaosKafka, pipe: Pipeline, *, pending: bool, seed: int) -> Pause:
    """Run the pipeline with two aggregators, pause instance 0 in the wanted state until instance 1
    owns every partition, resume it, and check everything exactly."""
    rng = random.Random(seed)
    count, rate = 100_000, 2_500.0  # 40 s of orders; the pause lands from 4-7 s on and lasts ~10 s
    pipe.set_window("5s", "3s")
    producer = BackgroundProducer(pipe, count, rate, seed=seed)
    for name in WORKERS:
        pipe.start(name)
    pipe.start("aggregator", instance=1)
    producer.start()
    t0, zombie = time.monotonic(), pipe.procs["aggregator"]
    both = lambda: _owned(pipe.log("aggregator")) and _owned(pipe.log("aggregator-1"))  # noqa: E731
    pipe.wait_for(both, 60, "both aggregators to own partitions")
    time.sleep(max(0.0, rng.uniform(4, 7) - (time.monotonic() - t0)))
    mark, other = len(pipe.log("aggregator")), len(pipe.log("aggregator-1"))
    try:
        open_on = _stop_inside_a_transaction(pipe, zombie, rng, pending=pending)
        print(f"{time.monotonic() - t0:6.1f}s: SIGSTOP instance 0, transaction open on changelog {open_on}")
        assert producer.is_alive(), "the pause must land while orders are still being produced"
        pipe.wait_for(lambda: ALL in pipe.log("aggregator-1")[other:], 30, "instance 1 to take every partition")
        time.sleep(rng.uniform(1.0, 2.0))  # instance 1 owns the zombie's partitions for a while
    finally:
        woke_at = datetime.now(UTC)
        zombie.send_signal(signal.SIGCONT)  # a stopped process would ignore the teardown's SIGTERM
    print(f"{time.monotonic() - t0:6.1f}s: SIGCONT instance 0")
    assert producer.is_alive(), "the zombie must wake while orders are still being produced"
    pipe.wait_for(lambda: _owned(pipe.log("aggregator")[mark:]), 60, "the zombie to rejoin the group")

    assert_exact_and_once(pipe, producer, "after the zombie woke up")
    assert all(proc.poll() is None for proc in pipe.procs.values()), "a worker exited"
    assert "Traceback" not in pipe.log("aggregator")
    assert_backtest_matches(pipe, chaos_kafka.env, timeout=180, caught_up_s=120)
    return Pause(open_on, woke_at, pipe.log("aggregator")[mark:], pipe.log("aggregator-1")[other:])


def _stop_inside_a_transaction(
    pipe: Pipeline, zombie: subprocess.Popen, rng: random.Random, *, pending: bool
) -> list[int]:
    """SIGSTOP the zombie at seeded moments until it stops with a transaction open on one of its
    changelog partitions (records written, not committed) and its offsets for them pending or not as
    asked; a stop that finds otherwise is undone at once (well below the session timeout, so no
    rebalance). The look waits 0.3 s first: a transaction whose commit the zombie had already sent
    is completed by the broker meanwhile and must not count as open. Returns the partitions with the
    transaction open."""
    probe = _Probe(pipe)
    try:
        for _ in range(400):
            owned = _owned(pipe.log("aggregator"))
            zombie.send_signal(signal.SIGSTOP)
            time.sleep(0.3)  # a commit already on its way (EndTxn sent) gets its markers written meanwhile
            open_on = probe.open_transactions(owned)
            if open_on and probe.offsets_pending(open_on) == pending:
                return open_on
            zombie.send_signal(signal.SIGCONT)
            time.sleep(rng.uniform(0.02, 0.2))
    finally:
        probe.close()
    raise AssertionError(f"400 stops never found the zombie inside a transaction with offsets pending={pending}")


class _Probe:
    """Quick looks at the broker while the zombie is stopped: clients made once, one request each."""

    def __init__(self, pipe: Pipeline) -> None:
        self.changelog, self.source = pipe.topic("order-aggregator-changelog"), pipe.topic("orders_enriched")
        self.group = pipe.workers.aggregator.group_id
        self.stable = make_consumer(pipe.settings, "zombie-probe")  # read_committed: its high end is the LSO
        self.high = make_consumer(pipe.settings, "zombie-probe", read_committed=False)
        self.admin = make_admin(pipe.settings)

    def open_transactions(self, partitions: list[int]) -> list[int]:
        """Partitions of the changelog whose last stable offset lags the high watermark."""
        out = []
        for p in partitions:
            tp = TopicPartition(self.changelog, p)
            if self.stable.get_watermark_offsets(tp, 5)[1] < self.high.get_watermark_offsets(tp, 5)[1]:
                out.append(p)
        return out

    def offsets_pending(self, partitions: list[int]) -> bool:
        """Whether the group has transactional offsets not yet committed or aborted for these partitions
        (an offset fetch that requires stable offsets is refused for them: UNSTABLE_OFFSET_COMMIT)."""
        req = [ConsumerGroupTopicPartitions(self.group, [TopicPartition(self.source, p) for p in partitions])]
        try:
            res = self.admin.list_consumer_group_offsets(req, require_stable=True)[self.group].result(timeout=5)
        except KafkaException as exc:
            return "UNSTABLE_OFFSET_COMMIT" in str(exc)
        unstable = KafkaError.UNSTABLE_OFFSET_COMMIT
        return any(tp.error is not None and tp.error.code() == unstable for tp in res.topic_partitions)

    def close(self) -> None:
        self.stable.close()
        self.high.close()


def _owned(log: str) -> list[int]:
    """The partitions of the log's last assignment (an instance that got none logs ``[]``)."""
    found = re.findall(r"assigned partitions \[([^\]]*)\]", log)
    return [int(p) for p in found[-1].split(",") if p.strip()] if found else []
