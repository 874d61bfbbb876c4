"""Our aggregator and replay beside their peers, on the same broker and the same input in one run.

* **Aggregator** (``KSTREAM_BENCH_AGG_EVENTS`` enriched orders, default 300,000, one Avro topic of 6
  partitions, produced by ``bench_pipeline.produce_input``): ``kstream-lab worker aggregator``
  (exactly-once, 1 process), Quix Streams (pinned, in its own venv under the bench's data dir:
  ``processing_guarantee="exactly-once"``, tumbling window of the aggregation's size and grace, sum
  and count, ``.final()``; variants ``group_by`` tier and keyed by the record key, the order id) and
  Kafka Streams (``bench/peers/kstreams``, the broker's Kafka version, ``exactly_once_v2``,
  ``groupBy`` tier, the same window and grace, ``suppress(untilWindowCloses)``) over a JSON copy of
  the same orders (the generator's same seed and start, checked record by record). Events/s from
  the first to the last committed input offset of each one's group, as ``bench_pipeline`` measures
  the aggregator (start-up, group join and restore excluded; ``bench_pipeline.timed_run`` for
  ours); for the peers also ``*_drained``, until the group has consumed its repartition topic to the
  end (the re-keyed records are aggregated after the input is committed; ours aggregates per source
  partition and commits input and output in one transaction, so for it the two are the same).
  After each run, the final windows in its output and the events they count: what was dropped as
  late (beyond the grace) or sits in the last windows, which never close, is missing from it.
* **Replay ceiling** (``KSTREAM_BENCH_RECORDS`` orders, default 1,000,000, Avro and JSON topics of
  ``bench_replay.produce``): Kafka's ``ConsumerPerformance`` (kafka-tools, read_committed; its
  ``fetch.nMsg.sec`` leaves the group join out) beside ``kstream_lab.replay`` into Polars and the
  raw confluent-kafka consume loop (``bench_replay``'s ``replay`` and ``ceiling`` variants).

``KSTREAM_BENCH_REPEAT`` rounds (default 3); within a round every contestant runs once, every other
round in reverse order; medians, every run and the per-round ratios (ours / peer) are written to
``bench/results/peers.json``. ``KSTREAM_BENCH_PARTS=aggregator`` or ``=replay`` runs one half
(printed only). The Quix venv and the Kafka Streams build live under ``KSTREAM_BENCH_DATA_DIR``
(default ``.kstream_lab/bench``), made once and reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import bench_pipeline, bench_replay

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PEERS = ROOT / "bench" / "peers"
DATA = Path(os.environ.get("KSTREAM_BENCH_DATA_DIR", ROOT / ".kstream_lab" / "bench")).resolve()
QUIX_VERSION = "3.28.1"  # pinned: its confluent-kafka pin is below ours, hence its own venv
QUIX_COMMIT_S = float(os.environ.get("KSTREAM_BENCH_QUIX_COMMIT_S", "1.0"))  # its default, 5 s, blurs the clock
KSTREAMS_COMMIT_MS = int(os.environ.get("KSTREAM_BENCH_KSTREAMS_COMMIT_MS", "100"))  # its default under exactly-once
AGG_EVENTS = bench_pipeline.AGG_EVENTS
RECORDS = bench_replay.RECORDS
REPEAT = int(os.environ.get("KSTREAM_BENCH_REPEAT", "3"))
PARTS = set(os.environ.get("KSTREAM_BENCH_PARTS", "aggregator,replay").split(","))
TIMEOUT_S = 300.0
KSTREAMS_MAIN = "dev.kstreamlab.peers.OrdersAggregation"
TARGETS = {"aggregator_eos_events_per_s": 300_000, "aggregator_vs_kafka_streams": 1.0, "replay_vs_consumer_perf": 0.9}


# ---- the peers' environments (made once, reused) --------------------------------------------------


def quix_python() -> Path:
    """The Python of a venv holding quixstreams==QUIX_VERSION under DATA (idempotent)."""
    venv = DATA / f"quixstreams-{QUIX_VERSION}"
    python, done = venv / "bin" / "python", venv / ".complete"
    if done.is_file():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"quixstreams=={QUIX_VERSION}"], check=True)
    done.write_text(QUIX_VERSION)
    return python


def kstreams_classpath() -> str:
    """``mvn -q package`` of bench/peers/kstreams into DATA (its jar and runtime dependencies), rebuilt
    when the sources change; the classpath holds kafka-tools too (ConsumerPerformance)."""
    src = PEERS / "kstreams"
    digest = hashlib.sha256()
    for path in sorted(src.rglob("*")):
        if path.is_file() and "target" not in path.parts:
            digest.update(str(path.relative_to(src)).encode() + path.read_bytes())
    build, done = DATA / "kstreams-build", DATA / "kstreams-build" / ".complete"
    if not (done.is_file() and done.read_text() == digest.hexdigest()):
        shutil.rmtree(build, ignore_errors=True)
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError("mvn not found: it builds the Kafka Streams peer")
        subprocess.run(
            [mvn, "-B", "-q", "-f", str(src / "pom.xml"), "package", f"-Dkstream.build.dir={build}"], check=True
        )
        done.write_text(digest.hexdigest())
    return f"{build / 'kstream-peers-kstreams-1.0.jar'}:{build / 'lib' / '*'}"


def logs() -> Path:
    """The peers' logs, kept after the run (the temp dir is not) under DATA/logs."""
    d = DATA / "logs"
    d.mkdir(parents=True, exist_ok=True)
    return d


def java() -> str:
    exe = shutil.which("java")
    if exe is None:
        raise RuntimeError("java not found: the Kafka Streams peer and ConsumerPerformance need it")
    return exe


# ---- the aggregator and its peers ----------------------------------------------------------------


def json_copy(settings, count: int) -> str:
    """The same enriched orders as ``bench_pipeline.produce_input`` (same seed, start and partitions) as
    compact JSON: the Kafka Streams peer's input."""
    from kstream_lab.generator import loyalty_tier_for
    from kstream_lab.generator.produce import produce_orders
    from kstream_lab.kafka.topics import apply_topics
    from kstream_lab.pipeline_spec import TopicSpec
    from kstream_lab.schemas.serde import SerdeContext, json_serializer

    spec = TopicSpec(
        name=f"bench-orders_enriched-json-{time.time_ns()}", partitions=6, value_format="json", retention_ms=-1
    )
    apply_topics(settings, [spec])

    def serialize(obj: dict, ctx: SerdeContext) -> bytes:
        return json_serializer({**obj, "loyalty_tier": loyalty_tier_for(obj["customer_id"])}, ctx)

    window = bench_pipeline.load_pipeline_spec().aggregation().window
    produce_orders(
        settings, spec, serialize, window, count=count, seed=3, start_ms=bench_pipeline.START_MS, progress=False
    )
    return spec.name


def same_orders(settings, avro_topic: str, json_topic: str) -> bool:
    """The JSON copy holds the Avro topic's orders: per partition, the same keys, totals and times."""
    import kstream_lab

    cols = ["partition", "offset", "key", "total_cents", "timestamp", "loyalty_tier"]
    a = kstream_lab.replay(avro_topic, settings=settings, columns=cols).sort("partition", "offset")
    j = kstream_lab.replay(json_topic, settings=settings, columns=cols).sort("partition", "offset")
    return a.height == j.height and a.select(cols[2:]).cast({"timestamp": j["timestamp"].dtype}).equals(j[cols[2:]])


def output_topic(settings, name: str) -> str:
    from kstream_lab.kafka.topics import apply_topics
    from kstream_lab.pipeline_spec import TopicSpec

    topic = f"bench-peer-out-{name}-{time.time_ns()}"
    apply_topics(settings, [TopicSpec(name=topic, partitions=6, value_format="json")])
    return topic


def output_records(settings, topic: str) -> dict:
    """What a contestant wrote: committed final windows and the events they count (read_committed).
    Events missing from the count were dropped as late or sit in windows that never closed (the input ends)."""
    import kstream_lab

    df = kstream_lab.replay(topic, settings=settings)
    if "final" in df.columns:  # ours emits updates (final=false) before each window's one final record
        df = df.filter(df["final"])
    return {"final_windows": df.height, "events_counted": int(df["count"].sum()) if df.height else 0}


def timed_peer(settings, cmd: list[str], group: str, topic: str, total: int, log: Path) -> tuple[float, float]:
    """Start ``cmd``; events/s between the first and the last committed input offset of ``group``
    (``bench_pipeline.committed_total``, as ``bench_pipeline.timed_run`` counts our workers), and events/s
    until the group has also consumed its repartition topics to their end (``drained``): a peer that
    re-keys through a topic commits its input before the aggregation behind it has read it, whereas our
    aggregator commits input and output in one transaction."""
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent, start_new_session=True)
    try:
        t_first = first = t_input = None
        internal: list[str] = []
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            now = time.monotonic()
            if t_input is None:
                done = bench_pipeline.committed_total(settings, group, topic)
                if t_first is None and done > 0:
                    t_first, first = now, done
                if done >= total and t_first is not None:
                    t_input = now
                    internal = repartition_topics(settings, group)
            if t_input is not None and t_first is not None and first is not None and drained(settings, group, internal):
                if t_input == t_first:
                    raise RuntimeError(f"{group}: everything committed at once; no rate to read")
                return (total - first) / (t_input - t_first), (total - first) / (now - t_first)
            if proc.poll() is not None:
                tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-6:])
                raise RuntimeError(f"{Path(cmd[0]).name} exited with {proc.returncode} ({log}): {tail}")
            time.sleep(0.05)
        raise RuntimeError(f"{group} did not finish in {TIMEOUT_S:.0f} s ({log})")
    finally:
        stop(proc)


def repartition_topics(settings, group: str) -> list[str]:
    """The peer's repartition topics: Kafka Streams' ``<app>-...-repartition``, Quix's ``repartition__<group>--...``."""
    from kstream_lab.kafka.admin import list_topics

    return [
        t for t in list_topics(settings) if group in t and (t.startswith("repartition__") or t.endswith("-repartition"))
    ]


def drained(settings, group: str, topics: list[str]) -> bool:
    """The group's committed offsets reach every partition's end (less one: the last transaction marker)."""
    from kstream_lab.kafka.admin import committed_offsets, watermarks

    for topic in topics:
        ends = {w.partition: w.high for w in watermarks(settings, topic)}
        committed = committed_offsets(settings, group, topic, list(ends))
        if any(end > 0 and committed.get(p, 0) < end - 1 for p, end in ends.items()):
            return False
    return True


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM (both peers close cleanly on it), SIGKILL to the process group after 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def aggregators(settings, tmp: Path) -> dict:
    from tests.support.pipeline import Pipeline

    window = bench_pipeline.load_pipeline_spec().aggregation().window
    window_ms, grace_ms = str(window.size_ms), str(window.grace_ms)
    avro = bench_pipeline.produce_input(settings, "orders_enriched", AGG_EVENTS)
    js = json_copy(settings, AGG_EVENTS)
    copy_ok = same_orders(settings, avro, js)
    qpy, classpath = str(quix_python()), kstreams_classpath()
    quix_app = str(PEERS / "quix" / "orders_aggregation.py")
    outputs: dict[str, list[dict]] = {}  # committed output records after each run: each one did aggregate
    drains: dict[tuple[str, int], float] = {}  # (peer, round) -> events/s until its repartition topic is read

    def ours(i: int) -> float:
        path = bench_pipeline.pipeline_copy(tmp, {"orders_enriched": avro})
        pipe = Pipeline(settings, path, path.parent)
        pipe.create_topics()
        try:
            rate = bench_pipeline.timed_run(settings, pipe, "aggregator", 1, avro, AGG_EVENTS)
        finally:
            pipe.stop_all()
        out = pipe.topic("sales_aggregates")
        outputs.setdefault("kstream_lab_aggregator", []).append(output_records(settings, out))
        return rate

    def quix(variant: str):
        def run(i: int) -> float:
            group = f"bench-quix-{variant}-{i}-{time.time_ns()}"
            state = tmp / group
            out = output_topic(settings, group)
            cmd = [qpy, quix_app, settings.bootstrap, settings.registry_url, avro, out]
            cmd += [group, variant, window_ms, grace_ms, str(state), str(QUIX_COMMIT_S)]
            rate, drains[(f"quix_{variant}", i)] = timed_peer(
                settings, cmd, group, avro, AGG_EVENTS, logs() / f"{group}.log"
            )
            outputs.setdefault(f"quix_{variant}", []).append(output_records(settings, out))
            return rate

        return run

    def kstreams(i: int) -> float:
        app = f"bench-kstreams-{i}-{time.time_ns()}"
        cmd = [
            java(),
            "-Xmx512m",
            f"-Djava.io.tmpdir={tmp}",
            "-cp",
            classpath,
            "dev.kstreamlab.peers.OrdersAggregation",
        ]
        out = output_topic(settings, app)
        cmd += [settings.bootstrap, js, out, app, window_ms, grace_ms, str(KSTREAMS_COMMIT_MS)]
        rate, drains[("kafka_streams", i)] = timed_peer(settings, cmd, app, js, AGG_EVENTS, logs() / f"{app}.log")
        outputs.setdefault("kafka_streams", []).append(output_records(settings, out))
        return rate

    contestants = {
        "kstream_lab_aggregator": ours,
        "quix_group_by": quix("group_by"),
        "quix_key": quix("key"),
        "kafka_streams": kstreams,
    }
    rounds = run_rounds(contestants)
    peers = ("quix_group_by", "quix_key", "kafka_streams")
    for i, r in enumerate(rounds):  # the peers' rates until drained, as contestants of their own
        r.update({f"{p}_drained": drains.get((p, i)) for p in peers})
    res: dict = {
        "events": AGG_EVENTS,
        "window_ms": int(window_ms),
        "grace_ms": int(grace_ms),
        "input": {"avro_topic": avro, "json_copy": js, "json_copy_same_orders": copy_ok},
        "quixstreams_config": {"version": QUIX_VERSION, "commit_interval_s": QUIX_COMMIT_S, "input": "the Avro topic"},
        "kafka_streams_config": {
            "version": kafka_version(classpath),
            "input": "the JSON copy",
            "commit_interval_ms": KSTREAMS_COMMIT_MS,
            "stream_threads": 1,
        },
    }
    res.update(summarise(rounds, "events_per_s"))
    for name, counts in outputs.items():
        res[name]["output_records_per_run"] = counts
    for peer in peers:
        ratio(res, rounds, "kstream_lab_aggregator", peer)
        ratio(res, rounds, "kstream_lab_aggregator", f"{peer}_drained")
    return res


# ---- replay and its ceiling ----------------------------------------------------------------------


def consumer_perf(settings, topic: str, classpath: str) -> dict:
    """Kafka's ConsumerPerformance over the whole topic, read_committed; its CSV line, as numbers."""
    out = subprocess.run(
        [java(), "-Xmx1g", "-cp", classpath, "org.apache.kafka.tools.ConsumerPerformance"]
        + ["--bootstrap-server", settings.bootstrap, "--topic", topic, "--num-records", str(RECORDS)]
        + ["--group", f"bench-perf-{time.time_ns()}", "--command-property", "isolation.level=read_committed"],
        capture_output=True,
        text=True,
        check=True,
        timeout=TIMEOUT_S,
    )
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    header = next(i for i, line in enumerate(lines) if line.startswith("start.time"))
    names = [n.strip() for n in lines[header].split(",")]
    row = dict(zip(names, (v.strip() for v in lines[header + 1].split(",")), strict=True))
    got = int(row["data.consumed.in.nMsg"])
    if got < RECORDS:
        raise RuntimeError(f"ConsumerPerformance read {got} of {RECORDS} records")
    return {k: float(v) for k, v in row.items() if k not in ("start.time", "end.time")}


def replays(settings) -> dict:
    classpath = kstreams_classpath()
    out: dict = {"records": RECORDS, "formats": {}}
    for fmt in ("avro", "json"):
        topic = bench_replay.produce(settings, fmt)
        perf_runs: list[dict] = []

        def perf(i: int, topic: str = topic, runs: list = perf_runs) -> float:
            runs.append(consumer_perf(settings, topic, classpath))
            return runs[-1]["fetch.nMsg.sec"]

        def variant(name: str, topic: str = topic, fmt: str = fmt):
            return lambda i: RECORDS / bench_replay.run_once(name, topic, fmt)["seconds"]

        rounds = run_rounds({"consumer_performance": perf, "replay": variant("replay"), "raw_loop": variant("ceiling")})
        res = summarise(rounds, "records_per_s")
        res["consumer_performance"]["with_group_join_records_per_s"] = [r["nMsg.sec"] for r in perf_runs]
        res["consumer_performance"]["runs_detail"] = perf_runs
        ratio(res, rounds, "replay", "consumer_performance")
        ratio(res, rounds, "raw_loop", "consumer_performance")
        ratio(res, rounds, "replay", "raw_loop")
        out["formats"][fmt] = res
        print(fmt, json.dumps({k: v for k, v in res.items() if not k.endswith("_per_round")}, default=str), flush=True)
    return out


# ---- rounds and ratios ---------------------------------------------------------------------------


ERRORS: dict[str, list[str]] = {}  # contestant -> what went wrong, per failed run (recorded, not hidden)


def run_rounds(contestants: dict) -> list[dict[str, float | None]]:
    """REPEAT rounds, each contestant once per round, every other round in reverse order. A failed run
    is recorded as None with its error (and the tail of its log) in ERRORS; the others go on."""
    names = list(contestants)
    rounds = []
    for i in range(REPEAT):
        r: dict[str, float | None] = {}
        for name in names if i % 2 == 0 else names[::-1]:
            try:
                r[name] = contestants[name](i)
                print(f"round {i}: {name} {r[name]:,.0f}/s (load {os.getloadavg()[0]:.1f})", flush=True)
            except Exception as exc:  # noqa: BLE001 -- a peer that fails is a result too
                r[name] = None
                ERRORS.setdefault(name, []).append(f"round {i}: {exc}")
                print(f"round {i}: {name} FAILED: {exc}", flush=True)
        rounds.append(r)
    return rounds


def summarise(rounds: list[dict[str, float | None]], unit: str) -> dict:
    out = {}
    for name in rounds[0]:
        runs = [r[name] for r in rounds]
        ok = [x for x in runs if x is not None]
        out[name] = {unit: statistics.median(ok) if ok else None, "runs": runs}
        if name in ERRORS:
            out[name]["errors"] = ERRORS[name]
    return out


def ratio(res: dict, rounds: list[dict[str, float | None]], ours: str, peer: str) -> None:
    """``ours / peer``: the median of the per-round ratios, every round's, and the ratio of the medians."""
    per_round = [a / b for r in rounds if (a := r[ours]) is not None and (b := r[peer]) is not None]
    key = f"{ours}_vs_{peer}"
    res[key] = statistics.median(per_round) if per_round else None
    res[key + "_per_round"] = per_round
    unit = next(iter(res[ours].keys()))
    a, b = res[ours][unit], res[peer][unit]
    res[key + "_of_medians"] = a / b if a is not None and b is not None else None


def kafka_version(classpath: str) -> str | None:
    lib = Path(classpath.split(":")[1]).parent
    jar = next(lib.glob("kafka-streams-*.jar"), None)
    return jar.stem.removeprefix("kafka-streams-") if jar else None


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the cluster's teardown on SIGTERM too
    DATA.mkdir(parents=True, exist_ok=True)
    quix_python(), kstreams_classpath()  # before the broker starts: neither is timed
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpu",
        "python": sys.version.split()[0],
        "repeat": REPEAT,
        "load_average_at_start": os.getloadavg(),
    }
    with bench_replay.local_cluster() as settings, tempfile.TemporaryDirectory(prefix="kstream-bench-peers-") as tmp:
        if "aggregator" in PARTS:
            results["aggregator"] = aggregators(settings, Path(tmp))
            print("aggregator", json.dumps(results["aggregator"], default=str), flush=True)
        if "replay" in PARTS:
            results["replay"] = replays(settings)
    results["load_average_at_end"] = os.getloadavg()
    if {"aggregator", "replay"} != PARTS:
        print(json.dumps(results, indent=2))
        return
    agg, rp = results["aggregator"], results["replay"]["formats"]
    results["targets"] = {
        **TARGETS,
        "aggregator_eos_met": agg["kstream_lab_aggregator"]["events_per_s"] >= TARGETS["aggregator_eos_events_per_s"],
        "aggregator_ahead_of_kafka_streams_met": agg["kstream_lab_aggregator_vs_kafka_streams"] > 1.0,
        **{
            f"replay_{fmt}_vs_consumer_perf_met": rp[fmt]["replay_vs_consumer_performance"]
            >= TARGETS["replay_vs_consumer_perf"]
            for fmt in rp
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "peers.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
