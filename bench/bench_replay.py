"""Replay 1M JSON and 1M Avro orders from the local broker into Polars, beside two baselines.

Variants, each run in its own subprocess (so VmHWM is that variant's peak RSS; the result's Arrow
size, the yardstick of the memory target, is taken after the peak), in ``KSTREAM_BENCH_REPEAT``
rounds (default 5) of every variant back to back; figures are medians, ratios the median of the
per-round ratios (all with the replay's fetch settings and consume size):

* ``ceiling``: the raw confluent-kafka consume loop touching only ``value()`` -- the client's limit;
* ``naive``: the same loop with json.loads / fastavro per record and a DataFrame from the dicts;
* ``fetch_only``: replay's fetch half alone (consume, columnar extraction, packed values), no decode:
  the bound for replay when decoding has cores of its own;
* ``replay``: ``kstream_lab.replay(topic)`` (bulk decode overlapped with fetching, metadata columns),
  fetching through the native C loop (``kstream_lab.kafka.native``), the default;
* ``replay_python``: the same through confluent-kafka's Python API (``KSTREAM_REPLAY_FETCH=python``), the
  fallback where no C compiler is available;
* ``replay_columns``: the same with a back-test's projection (partition, offset, the event timestamp,
  total_cents, loyalty_tier): keys, headers and record timestamps are not extracted.

Beside them, ``decode_only`` times the Python side alone on the same values held in memory: per
record (json.loads / fastavro) + DataFrame from dicts vs the replay's bulk decoder.

With ``KSTREAM_BENCH_BASELINE=REV`` (a git revision), the replay variants also run from that revision's
code (``replay@baseline`` ...), in the same rounds, each in a subprocess whose ``kstream_lab`` and bench
are a ``git archive`` of REV: the before/after figures of a change come from one run on one load.

The broker and registry are started on free ports in a temporary directory, so the numbers never
depend on whatever else runs. Size with KSTREAM_BENCH_RECORDS (default 1,000,000).
"""

from __future__ import annotations

import io
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from kstream_lab.generator.orders import recent_start_ms
from kstream_lab.kafka.read.python_loop import CONSUME_CHUNK

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
BASELINE = os.environ.get("KSTREAM_BENCH_BASELINE")
BASELINE_VARIANTS = ("replay", "replay_python", "replay_columns")
RECORDS = int(os.environ.get("KSTREAM_BENCH_RECORDS", "1000000"))
REPEAT = int(os.environ.get("KSTREAM_BENCH_REPEAT", "5"))
# Recent but entirely in the past: older timestamps fall to time-based retention, and the broker
# rejects timestamps more than an hour ahead (20 ms apart, 1M orders span 5.6 hours).
START_MS = recent_start_ms(minutes_back=RECORDS * 20 // 60_000 + 10)


@contextmanager
def local_cluster():
    """A broker and schema registry on free ports, torn down afterwards."""
    from kstream_lab.broker import LocalBroker
    from kstream_lab.local_registry import LocalRegistry
    from kstream_lab.settings import Settings
    from tests.support.paths import free_port

    with tempfile.TemporaryDirectory(prefix="kstream-bench-") as tmp:
        env = {
            "KSTREAM_DATA_DIR": tmp,
            "KSTREAM_BROKER_PORT": str(free_port()),
            "KSTREAM_CONTROLLER_PORT": str(free_port()),
            "KSTREAM_REGISTRY_PORT": str(free_port()),
        }
        for k in ("KSTREAM_BOOTSTRAP_SERVERS", "KSTREAM_SCHEMA_REGISTRY_URL"):
            os.environ.pop(k, None)
        os.environ.update(env)
        settings = Settings()
        broker, registry = LocalBroker(settings), LocalRegistry(settings)
        broker.up(timeout=120)
        try:
            registry.up(timeout=60)
            yield settings
        finally:
            registry.down(timeout=15)
            broker.down(timeout=30)


def produce(settings, fmt: str) -> str:
    from kstream_lab.generator import loyalty_tier_for
    from kstream_lab.generator.produce import produce_orders
    from kstream_lab.kafka.topics import apply_topics
    from kstream_lab.pipeline_spec import TopicSpec, load_pipeline
    from kstream_lab.schemas.serde import SerdeContext, json_serializer, value_serializer

    topic = f"bench-{fmt}"
    spec = TopicSpec(
        name=topic, partitions=6, value_format=fmt, schema="EnrichedOrder" if fmt == "avro" else None, retention_ms=-1
    )  # the orders' timestamps are in 2023: keep them
    apply_topics(settings, [spec])
    inner = json_serializer if fmt == "json" else value_serializer(settings, spec)

    def serialize(obj: dict, ctx: SerdeContext) -> bytes:
        return inner({**obj, "loyalty_tier": loyalty_tier_for(obj["customer_id"])}, ctx)

    window = load_pipeline(Path(__file__).resolve().parents[1] / "pipelines/orders.yaml").aggregation().window
    produce_orders(settings, spec, serialize, window, count=RECORDS, seed=5, start_ms=START_MS, progress=False)
    return topic


# ---- variants (run in a subprocess each) -----------------------------------------------------


def _consumer(settings, topic: str):
    from confluent_kafka import TopicPartition

    from kstream_lab.kafka.clients import make_consumer
    from kstream_lab.kafka.read import FETCH_TUNING

    c = make_consumer(settings, "bench-baseline", read_committed=True, **FETCH_TUNING)
    parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    return c


def variant_ceiling(settings, topic: str, fmt: str) -> None:
    c = _consumer(settings, topic)
    n, deadline = 0, time.monotonic() + 600
    while n < RECORDS and time.monotonic() < deadline:
        msgs = c.consume(CONSUME_CHUNK, 1.0)
        for m in msgs:
            m.value()
        n += len(msgs)
    c.close()
    return None


def variant_naive(settings, topic: str, fmt: str):
    import fastavro
    import polars as pl

    from kstream_lab.kafka.schema_registry import SchemaRegistry

    c = _consumer(settings, topic)
    rows, schemas = [], {}
    registry = SchemaRegistry(settings) if fmt == "avro" else None
    deadline = time.monotonic() + 600
    while len(rows) < RECORDS and time.monotonic() < deadline:
        for m in c.consume(CONSUME_CHUNK, 1.0):
            v = m.value()
            if fmt == "json":
                d = json.loads(v)
            else:
                sid = int.from_bytes(v[1:5], "big")
                if sid not in schemas:
                    schemas[sid] = fastavro.parse_schema(json.loads(registry.writer_schema(sid)))
                d = fastavro.schemaless_reader(io.BytesIO(v[5:]), schemas[sid])
            d["partition"], d["offset"], d["kafka_timestamp"] = m.partition(), m.offset(), m.timestamp()[1]
            rows.append(d)
    df = pl.DataFrame(rows)
    c.close()
    return df


def variant_fetch_only(settings, topic: str, fmt: str) -> None:
    """Replay's fetch half alone: the same consumer, columnar extraction and packing, batches dropped."""
    from kstream_lab.kafka.read import read_batches
    from kstream_lab.replay.reader import BATCH_RECORDS, resolve_range

    n = sum(
        len(b)
        for b in read_batches(settings, topic, resolve_range(settings, topic).as_offsets(), batch_size=BATCH_RECORDS)
    )
    assert n == RECORDS, n


def variant_replay(settings, topic: str, fmt: str):
    import kstream_lab

    df = kstream_lab.replay(topic, settings=settings)
    assert df.height == RECORDS, df.height
    return df


BACKTEST_COLUMNS = ["partition", "offset", "timestamp", "total_cents", "loyalty_tier"]


def variant_replay_columns(settings, topic: str, fmt: str):
    """What a back-test reads: a projection, so keys, headers and record timestamps are not extracted."""
    import kstream_lab

    df = kstream_lab.replay(topic, settings=settings, columns=BACKTEST_COLUMNS)
    assert df.height == RECORDS, df.height
    return df


def variant_replay_python(settings, topic: str, fmt: str):
    return variant_replay(settings.model_copy(update={"replay_fetch": "python"}), topic, fmt)


VARIANTS = {
    "ceiling": variant_ceiling,
    "naive": variant_naive,
    "fetch_only": variant_fetch_only,
    "replay": variant_replay,
    "replay_python": variant_replay_python,
    "replay_columns": variant_replay_columns,
}  # run in this order per round


def peak_rss() -> int:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries that across fork+exec, so a child
    would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_variant(variant: str, topic: str, fmt: str) -> None:
    import fastavro  # noqa: F401  -- imports happen before the clock starts, for every variant alike
    import polars  # noqa: F401

    import kstream_lab.api  # noqa: F401
    from kstream_lab.kafka import schema_registry  # noqa: F401
    from kstream_lab.schemas import bulk  # noqa: F401
    from kstream_lab.settings import Settings

    settings = Settings()
    # Lazy imports of the libraries, also before the clock: polars imports numpy.ma on its first
    # NumPy -> Series conversion, the registry client its HTTP stack when first constructed (~0.1 s each).
    import numpy.ma  # noqa: F401

    schema_registry.SchemaRegistry(settings).close()
    from kstream_lab.kafka import native

    native.load(settings.native_cache_dir)  # built by make setup; loading it (dlopen) is not timed either
    t0 = time.perf_counter()
    frame = VARIANTS[variant](settings, topic, fmt)
    seconds = time.perf_counter() - t0
    peak = peak_rss()  # before the sizes below: converting to Arrow allocates
    sizes = (
        {"frame_bytes": 0, "arrow_bytes": 0}
        if frame is None
        else {"frame_bytes": int(frame.estimated_size()), "arrow_bytes": int(frame.to_arrow().nbytes)}
    )
    print(json.dumps({"seconds": seconds, "peak_rss": peak, **sizes}))


def run_once(variant: str, topic: str, fmt: str, baseline: Path | None = None) -> dict:
    """One variant in a subprocess; ``variant@baseline`` runs it from the baseline tree's code."""
    name, _, at = variant.partition("@")
    tree = baseline if at else ROOT
    env = {**os.environ, "PYTHONPATH": str(tree)} if at else os.environ.copy()
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_replay", "--variant", name, topic, fmt],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tree,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@contextmanager
def baseline_tree():
    """The baseline revision's files (``git archive``), or None without KSTREAM_BENCH_BASELINE."""
    if not BASELINE:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="kstream-bench-baseline-") as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", BASELINE], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        yield Path(tmp)


def variants(baseline: Path | None) -> list[str]:
    extra = [f"{v}@baseline" for v in BASELINE_VARIANTS] if baseline is not None else []
    return [*VARIANTS, *extra]


def measure_rounds(topic: str, fmt: str, baseline: Path | None = None) -> dict:
    """``REPEAT`` rounds, each running every variant once, back to back (every other round in reverse order).

    Rounds rather than each variant's runs in a row: the load here drifts over tens of seconds
    (the ceiling moved by 40 % between runs), so a ratio of runs taken seconds apart is the fair
    one. Each ratio is reported both ways: the median of the per-round ratios, and the ratio of
    the medians.
    """
    names = variants(baseline)
    # Odd rounds run the variants in reverse order, so no variant always runs first or last in a round.
    rounds = [
        {v: run_once(v, topic, fmt, baseline) for v in (names if i % 2 == 0 else names[::-1])} for i in range(REPEAT)
    ]
    res = {}
    for v in names:
        runs = [r[v] for r in rounds]
        seconds = statistics.median(r["seconds"] for r in runs)
        res[v] = {
            "records_per_s": RECORDS / seconds,
            "seconds": seconds,
            "runs_s": [r["seconds"] for r in runs],
            "peak_rss_mb": statistics.median(r["peak_rss"] for r in runs) / 2**20,
            "frame_mb": runs[0]["frame_bytes"] / 2**20,
            "arrow_mb": runs[0]["arrow_bytes"] / 2**20,
        }
    for name, (a, b) in {
        "replay_vs_ceiling": ("replay", "ceiling"),
        "replay_vs_naive": ("replay", "naive"),
        "fetch_only_vs_ceiling": ("fetch_only", "ceiling"),
        "replay_vs_replay_python": ("replay", "replay_python"),
        "replay_python_vs_ceiling": ("replay_python", "ceiling"),
        "replay_columns_vs_replay": ("replay_columns", "replay"),
        "replay_columns_vs_ceiling": ("replay_columns", "ceiling"),
        **{f"{v}_vs_baseline": (v, f"{v}@baseline") for v in BASELINE_VARIANTS if baseline is not None},
    }.items():
        per_round = [r[b]["seconds"] / r[a]["seconds"] for r in rounds]
        res[name] = statistics.median(per_round)
        res[name + "_per_round"] = per_round
        res[name + "_of_medians"] = res[a]["records_per_s"] / res[b]["records_per_s"]
    return res


def decode_only(settings, topic: str, fmt: str) -> dict:
    """Python-side decode alone (values already in memory): per record + dicts vs bulk, median of 3."""
    import fastavro
    import polars as pl

    import kstream_lab
    from kstream_lab.kafka.read import Batch
    from kstream_lab.kafka.schema_registry import SchemaRegistry
    from kstream_lab.replay.decode import BatchDecoder

    values = kstream_lab.replay(topic, value_format="raw", settings=settings)["value"].to_list()
    registry = SchemaRegistry(settings)
    schemas: dict = {}

    def naive() -> None:
        if fmt == "json":
            rows = [json.loads(v) for v in values]
        else:
            rows = []
            for v in values:
                sid = int.from_bytes(v[1:5], "big")
                if sid not in schemas:
                    schemas[sid] = fastavro.parse_schema(json.loads(registry.writer_schema(sid)))
                rows.append(fastavro.schemaless_reader(io.BytesIO(v[5:]), schemas[sid]))
        pl.DataFrame(rows)

    def bulk() -> None:
        decoder = BatchDecoder(settings, topic, fmt)
        frames = []
        for i in range(0, len(values), 50_000):
            frames.append(decoder.decode(Batch.of(topic, 0, values[i : i + 50_000])))
        pl.concat(frames)

    out = {}
    for name, fn in (("naive", naive), ("bulk", bulk)):
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
        out[f"{name}_records_per_s"] = len(values) / statistics.median(runs)
    out["bulk_vs_naive"] = out["bulk_records_per_s"] / out["naive_records_per_s"]
    return out


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the cluster's teardown on SIGTERM too
    results: dict = {
        "records": RECORDS,
        "repeat": REPEAT,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpu",
        "load_average_1m_start": os.getloadavg()[0],
        "baseline": BASELINE,
        "formats": {},
    }
    with local_cluster() as settings, baseline_tree() as baseline:
        topics = {fmt: produce(settings, fmt) for fmt in ("json", "avro")}
        for fmt, topic in topics.items():  # every subprocess first, while this process is still small
            res = measure_rounds(topic, fmt, baseline)
            rp = res["replay"]
            res["peak_rss_vs_arrow"] = rp["peak_rss_mb"] / rp["arrow_mb"]  # the target: <= 3x
            res["peak_rss_vs_frame"] = rp["peak_rss_mb"] / rp["frame_mb"]  # Polars' estimated_size
            above = rp["peak_rss_mb"] - res["ceiling"]["peak_rss_mb"]  # what replay adds to the bare client
            res["peak_rss_above_ceiling_vs_frame"] = above / rp["frame_mb"]
            results["formats"][fmt] = res
        for fmt, topic in topics.items():
            res = results["formats"][fmt]
            res["decode_only"] = decode_only(settings, topic, fmt)
            print(
                f"{fmt}: "
                + ", ".join(
                    f"{v} {res[v]['records_per_s']:,.0f} rec/s (peak {res[v]['peak_rss_mb']:.0f} MB)" for v in VARIANTS
                )
                + f"; fetch only {res['fetch_only_vs_ceiling']:.2f}x ceiling"
                f"; replay/ceiling {res['replay_vs_ceiling']:.2f}x, replay/naive {res['replay_vs_naive']:.2f}x,"
                f" native/python fetch {res['replay_vs_replay_python']:.2f}x,"
                f" peak RSS / Arrow size {res['peak_rss_vs_arrow']:.2f}x; back-test projection "
                f"{res['replay_columns_vs_replay']:.2f}x replay; decode only: bulk "
                f"{res['decode_only']['bulk_records_per_s']:,.0f} rec/s = "
                f"{res['decode_only']['bulk_vs_naive']:.2f}x naive"
                + "".join(f"; {v} {res[v + '_vs_baseline']:.2f}x baseline" for v in BASELINE_VARIANTS if baseline),
                flush=True,
            )
    results["load_average_1m_end"] = os.getloadavg()[0]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "replay.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--variant":
        run_variant(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
