"""Rows/s into PostgreSQL: the Kafka Connect sink (Debezium's JDBC sink) beside the Python sink worker.

One run, one broker, registry and PostgreSQL server (free ports, temp dirs): ``KSTREAM_BENCH_SINK_ROWS``
SalesAggregate records (Avro, Confluent framing, one final row per key over 6 partitions) are
produced once into a sales_aggregates topic; then each sink reads that topic from the beginning into
a database of its own, in turns, ``KSTREAM_BENCH_REPEAT`` times each, alternating. Per run:

* ``total_s``: from starting the sink (the Python worker's process; the connector's ``PUT``, the
  Connect worker already running) to the last row in the table;
* ``steady_rows_per_s``: rows over the time from the first row in the table to the last, which leaves
  out process and task start-up.

The table is polled with ``count(*)`` every 0.1 s. Medians are reported beside every run.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from bench.bench_pipeline import pipeline_copy
from bench.bench_replay import local_cluster

RESULTS = Path(__file__).resolve().parent / "results"
ROWS = int(os.environ.get("KSTREAM_BENCH_SINK_ROWS", "100000"))
REPEAT = int(os.environ.get("KSTREAM_BENCH_REPEAT", "3"))
TIERS = ("bronze", "silver", "gold", "platinum")


def produce_aggregates(settings, pipe) -> str:
    from kstream_lab.kafka.producing import BatchProducer
    from kstream_lab.schemas.serde import SerdeContext, value_serializer

    topic = pipe.topic("sales_aggregates")
    serialize = value_serializer(settings, pipe.spec.topic(topic))
    ctx = SerdeContext(topic)
    with BatchProducer(settings) as producer:
        for i in range(ROWS):
            p, tier = i % 6, TIERS[(i // 6) % len(TIERS)]
            ws = 1_700_000_000_000 + 60_000 * (i // (6 * len(TIERS)))
            value = {
                "window_start": ws,
                "window_end": ws + 60_000,
                "tier": tier,
                "source_partition": p,
                "total_cents": 1000 + i,
                "count": 1 + i % 7,
                "final": True,
            }
            producer.produce(topic, key=f"{ws}:{tier}:{p}".encode(), value=serialize(value, ctx), partition=p)
    return topic


def count(dsn: str) -> int:
    try:
        with psycopg.connect(dsn) as conn:
            return conn.execute("SELECT count(*) FROM sales_aggregates").fetchone()[0]
    except psycopg.errors.UndefinedTable:
        return 0


def timed_fill(dsn: str, start, timeout: float = 600.0) -> dict:
    t0 = time.monotonic()
    stop = start()
    first = None
    try:
        while (n := count(dsn)) < ROWS:
            if n and first is None:
                first = time.monotonic()
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"only {n} of {ROWS} rows after {timeout:.0f}s")
            time.sleep(0.1)
        end = time.monotonic()
    finally:
        stop()
    first = first or end
    return {
        "total_s": round(end - t0, 2),
        "steady_s": round(end - first, 2),
        "rows_per_s": round(ROWS / (end - t0)),
        "steady_rows_per_s": round(ROWS / max(end - first, 1e-3)),
    }


def main() -> None:
    from kstream_lab.connect import LocalConnect
    from kstream_lab.connect.sink import apply_sink
    from kstream_lab.pipeline_spec import load_pipeline
    from kstream_lab.workers.components import worker_command
    from tests.support.paths import ROOT, free_port
    from tests.support.pipeline import Pipeline, write_pipeline
    from tests.support.postgres import PostgresProcess

    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpu",
        "python": sys.version.split()[0],
        "rows": ROWS,
        "repeat": REPEAT,
        "load_average_at_start": os.getloadavg(),
    }
    runs: dict[str, list[dict]] = {"python_sink": [], "connect_sink": []}
    with local_cluster() as settings, tempfile.TemporaryDirectory(prefix="kstream-bench-sink-") as tmp:
        pg = PostgresProcess(Path(tmp) / "pg")
        pg.start()
        group = f"bench-{uuid.uuid4().hex[:6]}"
        s = settings.model_copy(update={"connect_port": free_port(), "connect_group_id": group})
        worker = LocalConnect(s, home=Path(tmp) / "connect")
        try:
            base = Pipeline(s, write_pipeline(Path(tempfile.mkdtemp(dir=tmp))), Path(tmp))
            base.create_topics()
            t0 = time.monotonic()
            topic = produce_aggregates(s, base)
            results["produce_s"] = round(time.monotonic() - t0, 2)
            t0 = time.monotonic()
            worker.up(timeout=300)
            results["connect_worker_start_s"] = round(time.monotonic() - t0, 1)
            for n in range(REPEAT):
                for kind in ("python", "connect"):
                    db = f"{kind}_{n}"
                    with psycopg.connect(pg.dsn, autocommit=True) as conn:
                        conn.execute(f"CREATE DATABASE {db}")
                    dsn = pg.dsn.rsplit("/", 1)[0] + f"/{db}"
                    path = pipeline_copy(Path(tmp), {"sales_aggregates": topic, "orders_dlq": base.topic("orders_dlq")})
                    pipe = Pipeline(s, path, path.parent)
                    suffix = uuid.uuid4().hex[:6]
                    pipe.set_worker("sink", kind=kind, target=dsn, connector_name=f"bench-{suffix}")
                    if kind == "python":

                        def start(pipe=pipe):
                            log = (pipe.tmp / "sink.log").open("ab")
                            proc = subprocess.Popen(
                                worker_command("sink", pipe.file), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
                            )
                            return lambda: (proc.terminate(), proc.wait(30))

                    else:

                        def start(pipe=pipe):
                            spec = load_pipeline(pipe.file)
                            apply_sink(s, spec, worker.client, wait=0)
                            return lambda: worker.client.delete(spec.workers.sink.connector_name)

                    run = timed_fill(dsn, start)
                    runs[f"{kind}_sink"].append(run)
                    print(f"{kind:>8} run {n}: {run}", flush=True)
        finally:
            worker.down(timeout=30)
            pg.stop()
    results["runs"] = runs
    for name, rs in runs.items():
        results[name] = {k: statistics.median(r[k] for r in rs) for k in ("total_s", "rows_per_s", "steady_rows_per_s")}
    results["connect_vs_python_steady"] = round(
        results["connect_sink"]["steady_rows_per_s"] / results["python_sink"]["steady_rows_per_s"], 2
    )
    results["load_average_at_end"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "connect_sink.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
