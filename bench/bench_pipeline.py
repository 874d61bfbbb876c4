"""Live pipeline numbers: aggregator and enricher throughput with exactly-once, and end-to-end latency.

* ``aggregator``: events/s of the transactional aggregator (Avro in, fold, changelog, Avro out,
  offsets in the transaction) with 1 and 2 processes, beside ``fold_only`` -- the same processing
  over the same bytes without Kafka: the per-process CPU ceiling of the work itself.
* ``enricher``: events/s of the transactional enricher (tier lookups against the real customer
  service, cache warm after the first batches) with 1 and 2 processes.
* ``e2e``: latency from ``POST /orders`` to the order being counted in the sink row, p50/p99, at
  500 orders/s, beside the order service's own 202 latency (the first hop); measured after a warm-up
  at the same rate (KSTREAM_BENCH_E2E_WARMUP, 5 s), which is reported apart.

Throughput is measured from the first to the last committed input offset of the worker's group
(start-up and group join excluded), median of ``KSTREAM_BENCH_REPEAT`` runs. The broker and registry
run on free ports in a temp dir. Sizes: KSTREAM_BENCH_AGG_EVENTS (300,000), KSTREAM_BENCH_ENRICH_EVENTS
(100,000), KSTREAM_BENCH_E2E_SECONDS (20).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from bench.bench_replay import local_cluster
from kstream_lab.generator.orders import recent_start_ms

RESULTS = Path(__file__).resolve().parent / "results"
AGG_EVENTS = int(os.environ.get("KSTREAM_BENCH_AGG_EVENTS", "300000"))
ENRICH_EVENTS = int(os.environ.get("KSTREAM_BENCH_ENRICH_EVENTS", "100000"))
E2E_SECONDS = float(os.environ.get("KSTREAM_BENCH_E2E_SECONDS", "20"))
E2E_WARMUP = float(os.environ.get("KSTREAM_BENCH_E2E_WARMUP", "5"))  # posted at the rate, reported apart
E2E_RATE = 500.0
CONNECTIONS = 32
REPEAT = int(os.environ.get("KSTREAM_BENCH_REPEAT", "3"))
# Recent but entirely past event times (20 ms apart): Kafka deletes records older than retention and
# the broker rejects timestamps more than an hour ahead.
START_MS = recent_start_ms(minutes_back=max(AGG_EVENTS, ENRICH_EVENTS) * 20 // 60_000 + 10)
PARTS = set(os.environ.get("KSTREAM_BENCH_PARTS", "e2e,throughput").split(","))  # partial runs print only


def pipeline_copy(tmp: Path, shared: dict[str, str] | None = None) -> Path:
    """A renamed pipeline copy (fresh groups, ids, outputs); ``shared`` maps roles to existing topics."""
    from tests.support.pipeline import write_pipeline

    d = Path(tempfile.mkdtemp(dir=tmp))
    path = write_pipeline(d)
    data = yaml.safe_load(path.read_text())
    for role, name in (shared or {}).items():
        old = next(t for t in data["topics"] if t.rsplit("-", 1)[0] == role)
        data["topics"][name] = data["topics"].pop(old)
        for agg in data["aggregations"].values():
            agg["source"] = name if agg["source"] == old else agg["source"]
        for worker in data["workers"].values():
            for k, v in worker.items():
                if v == old:
                    worker[k] = name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def produce_input(settings, role: str, count: int) -> str:
    """``count`` Avro orders (enriched when role is orders_enriched) in a fresh 6-partition topic."""
    from kstream_lab.generator import loyalty_tier_for
    from kstream_lab.generator.produce import produce_orders
    from kstream_lab.kafka.topics import apply_topics
    from kstream_lab.pipeline_spec import TopicSpec, load_pipeline
    from kstream_lab.schemas.serde import SerdeContext, value_serializer

    schema = "EnrichedOrder" if role == "orders_enriched" else "Order"
    spec = TopicSpec(
        name=f"bench-{role}-{time.time_ns()}", partitions=6, value_format="avro", schema=schema, retention_ms=-1
    )
    apply_topics(settings, [spec])
    inner = value_serializer(settings, spec)

    def serialize(obj: dict, ctx: SerdeContext) -> bytes:
        if role == "orders_enriched":
            obj = {**obj, "loyalty_tier": loyalty_tier_for(obj["customer_id"])}
        return inner(obj, ctx)

    window = load_pipeline(Path(__file__).resolve().parents[1] / "pipelines/orders.yaml").aggregation().window
    produce_orders(settings, spec, serialize, window, count=count, seed=3, start_ms=START_MS, progress=False)
    return spec.name


def committed_total(settings, group: str, topic: str) -> int:
    from kstream_lab.kafka.admin import committed_offsets

    return sum(o for o in committed_offsets(settings, group, topic, list(range(6))).values() if o > 0)


def timed_run(settings, pipe, worker: str, processes: int, topic: str, total: int) -> float:
    """Start ``processes`` instances, return events/s between first and last committed offsets."""
    group = getattr(pipe.workers, worker).group_id
    for i in range(processes):
        pipe.start(worker, instance=i)
    t_first = first = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        done = committed_total(settings, group, topic)
        now = time.monotonic()
        if t_first is None and done > 0:
            t_first, first = now, done
        if done >= total:
            pipe.stop_all()
            return (total - first) / (now - t_first)
        time.sleep(0.05)
    raise RuntimeError(f"{worker} did not finish")


def fold_only(settings, topic: str, count: int) -> float:
    """The aggregator's own processing (bulk decode + fold + aggregate encoding) over the same bytes in
    batches of the worker's size, outputs discarded, no Kafka: the per-process CPU ceiling of the work."""
    from confluent_kafka import Message

    from kstream_lab.kafka.read import read_records
    from kstream_lab.workers.runner import aggregator_processor

    pipe = load_pipeline_spec()
    processor = aggregator_processor(settings, pipe)
    processor.assign(list(range(6)), lambda parts: {p: [] for p in parts})
    batch = pipe.workers.aggregator.batch_size
    messages = [
        Message(
            topic=r.topic, partition=r.partition, offset=r.offset, key=r.key, value=r.value, headers=list(r.headers)
        )
        for r in read_records(settings, topic)
    ]
    out = _Discard()
    t0 = time.perf_counter()
    for at in range(0, len(messages), batch):
        processor.process(messages[at : at + batch], out)
        processor.changelog()
    return len(messages) / (time.perf_counter() - t0)


class _Discard:
    def send(self, *args, **kwargs) -> None:
        pass


def load_pipeline_spec():
    from kstream_lab.pipeline_spec import load_pipeline

    return load_pipeline(Path(__file__).resolve().parents[1] / "pipelines/orders.yaml")


def throughput(settings, tmp: Path) -> dict:
    from tests.support.pipeline import Pipeline

    out: dict = {}
    for worker, role, count in (
        ("aggregator", "orders_enriched", AGG_EVENTS),
        ("enricher", "orders_raw", ENRICH_EVENTS),
    ):
        topic = produce_input(settings, role, count)
        res: dict = {"events": count}
        if worker == "aggregator":
            runs = [fold_only(settings, topic, count) for _ in range(REPEAT)]
            res["fold_only"] = {"events_per_s": statistics.median(runs), "runs": runs}
        for processes in (1, 2):
            runs = []
            for _ in range(REPEAT):
                path = pipeline_copy(tmp, {role: topic})
                pipe = Pipeline(settings, path, path.parent)
                pipe.create_topics()
                if worker == "enricher":
                    pipe.start("customer-service")
                try:
                    runs.append(timed_run(settings, pipe, worker, processes, topic, count))
                finally:
                    pipe.stop_all()
            res[f"eos_{processes}_process"] = {"events_per_s": statistics.median(runs), "runs": runs}
            print(worker, processes, [round(r) for r in runs], flush=True)
        out[worker] = res
    return out


async def raw_post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, body: bytes
) -> tuple[int, bytes]:
    """One HTTP/1.1 keep-alive POST. The load generator shares two cores with the whole pipeline, so
    it must cost far less per request than the service it measures (httpx costs about as much)."""
    writer.write(
        b"POST " + path.encode() + b" HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(h.split(":", 1)[1]) for h in lines if h.lower().startswith("content-length:"))
    return int(lines[0].split()[1]), await reader.readexactly(length)


def e2e_latency(settings, tmp: Path, rate: float = E2E_RATE) -> dict:
    """POST at ``rate``/s; latency until the sink row of the order's (window, tier, partition) counts it."""
    from kstream_lab.generator.customers import customer_id, loyalty_tier_for
    from tests.support.pipeline import Pipeline

    path = pipeline_copy(tmp)
    pipe = Pipeline(settings, path, path.parent)
    pipe.create_topics()
    for name in ("customer-service", "order-service", "enricher", "aggregator", "sink"):
        pipe.start(name)
    seen: dict[tuple, list[tuple[int, float]]] = {}  # key -> [(count, first time seen)]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            t = time.monotonic()
            for r in pipe.sink_rows():
                key = (r["window_start"], r["tier"], r["source_partition"])
                hist = seen.setdefault(key, [])
                if not hist or hist[-1][0] < r["count"]:
                    hist.append((r["count"], t))
            time.sleep(0.05)  # readers must not starve the sink of its file lock

    orders: list[tuple[float, float, dict, str]] = []
    n = int((E2E_WARMUP + E2E_SECONDS) * rate)

    async def post_all() -> float:
        host, port = "127.0.0.1", pipe.workers.order_service.port
        pool: asyncio.Queue = asyncio.Queue()
        for _ in range(CONNECTIONS):
            pool.put_nowait(await asyncio.open_connection(host, port))

        async def post(i: int, scheduled: float) -> None:
            cust = customer_id(i % 5000)
            body = json.dumps({"customer_id": cust, "total_cents": 100 + i % 900, "item_count": 1}).encode()
            reader, writer = await pool.get()
            status, payload = await raw_post(reader, writer, "/orders", body)
            pool.put_nowait((reader, writer))
            if status == 202:  # latency counts from the scheduled send time: client queueing is included
                orders.append((scheduled, time.monotonic(), json.loads(payload), cust))

        tasks, start = [], time.monotonic()
        for i in range(n):
            scheduled = start + i / rate
            ahead = scheduled - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            tasks.append(asyncio.create_task(post(i, scheduled)))
        await asyncio.gather(*tasks)
        while not pool.empty():
            pool.get_nowait()[1].close()
        return start

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    start = asyncio.run(post_all())
    achieved = len(orders) / (max(t1 for _t0, t1, _a, _c in orders) - start)
    deadline = time.monotonic() + 60  # drain: every accepted order counted in the sink
    while time.monotonic() < deadline and sum(r["count"] for r in pipe.sink_rows()) < len(orders):
        time.sleep(0.2)
    time.sleep(0.2)
    stop.set()
    watcher.join()
    pipe.stop_all()
    # the k-th order (by offset) of a (window, tier, partition) is in the sink once its count reaches k
    by_key: dict[tuple, list[tuple[int, float, float]]] = {}
    for t0, t1, acc, cust in orders:
        ws = acc["timestamp"] - acc["timestamp"] % 60_000
        by_key.setdefault((ws, loyalty_tier_for(cust), acc["partition"]), []).append((acc["offset"], t0, t1))
    samples, missing = [], 0  # (posted, acknowledged, seen in the sink), relative to the first post
    for key, items in by_key.items():
        hist = seen.get(key, [])
        for k, (_off, t0, t1) in enumerate(sorted(items), start=1):
            t_seen = next((t for c, t in hist if c >= k), None)
            if t_seen is None:
                missing += 1
            else:
                samples.append((t0 - start, t1 - start, t_seen - start))
    if not samples:
        raise RuntimeError(f"no order was seen in the sink; see the logs in {path.parent}")
    steady = [x for x in samples if x[0] >= E2E_WARMUP]
    return {
        "orders": n,
        "target_rate": rate,
        "achieved_rate": achieved,
        "not_seen": missing,
        "warmup_s": E2E_WARMUP,
        "measured_orders": len(steady),
        **latency_stats(steady),
        "warmup": latency_stats([x for x in samples if x[0] < E2E_WARMUP]),
        "post_to_sink_max_ms_by_second": max_by_second(samples),
    }


def latency_stats(samples: list[tuple[float, float, float]]) -> dict:
    """p50/p99 of post -> sink, post -> 202 and 202 -> sink, in ms."""
    if not samples:
        return {}

    def pct(xs: list[float]) -> dict:
        xs = sorted(xs)
        q = lambda p: round(1000 * xs[min(len(xs) - 1, int(p * len(xs)))], 1)  # noqa: E731
        return {"p50": q(0.5), "p99": q(0.99), "max": round(1000 * xs[-1], 1)}

    return {
        "post_to_sink_ms": pct([seen - post for post, _ack, seen in samples]),
        "post_to_202_ms": pct([ack - post for post, ack, _seen in samples]),
        "ack_to_sink_ms": pct([max(0.0, seen - ack) for _post, ack, seen in samples]),
    }


def max_by_second(samples: list[tuple[float, float, float]]) -> list[int]:
    """The slowest post -> sink latency (ms) of the orders posted in each second of the run."""
    worst: dict[int, float] = {}
    for post, _ack, seen in samples:
        worst[int(post)] = max(worst.get(int(post), 0.0), seen - post)
    return [round(1000 * worst[s]) for s in sorted(worst)]


def main() -> None:
    with local_cluster() as settings, tempfile.TemporaryDirectory(prefix="kstream-bench-pipe-") as tmp:
        results = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cpu",
            "repeat": REPEAT,
            "python": sys.version.split()[0],
            "load_average_at_start": os.getloadavg(),
        }
        if "e2e" in PARTS:
            results["e2e"] = e2e_latency(settings, Path(tmp))
            print("e2e", results["e2e"], flush=True)
            results["e2e_200_per_s"] = e2e_latency(settings, Path(tmp), rate=200.0)  # below saturation
            print("e2e 200/s", results["e2e_200_per_s"], flush=True)
        if "throughput" in PARTS:
            results["throughput"] = throughput(settings, Path(tmp))
    if {"e2e", "throughput"} != PARTS:
        print(json.dumps(results, indent=2))
        return
    results["load_average_at_end"] = os.getloadavg()  # the machine is shared: read the numbers against it
    agg = results["throughput"]["aggregator"]
    results["targets"] = {
        "aggregator_eos_events_per_s_per_process": 50_000,
        "aggregator_met": agg["eos_1_process"]["events_per_s"] >= 50_000,
        "e2e_p99_ms": 1000,
        "e2e_met": results["e2e"]["post_to_sink_ms"]["p99"] <= 1000,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pipeline.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
