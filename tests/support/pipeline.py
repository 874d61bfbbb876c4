"""An isolated copy of the order pipeline for one test: renamed topics, free ports, own processes.

Every test gets topics with a unique suffix (the session broker is shared), a pipeline YAML written
to its tmp dir, and helpers to start/stop/kill the real worker processes (``python -m kstream_lab
worker NAME``) and to compute what the generator's truth says the sink must contain.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import polars as pl
import yaml

from kstream_lab.aggregations.spec import WindowSpec
from kstream_lab.generator.produce import produce_orders
from kstream_lab.kafka.admin import committed_offsets
from kstream_lab.kafka.read import read_records, snapshot_bounds
from kstream_lab.kafka.topics import apply_topics, delete_topics
from kstream_lab.pipeline_spec import PipelineSpec, TopicSpec, WorkersConfig, load_pipeline
from kstream_lab.schemas.serde import SerdeContext, Serializer, value_decoder, value_serializer
from kstream_lab.settings import Settings
from kstream_lab.sinks.duckdb import read_aggregates
from kstream_lab.workers.components import component, worker_command
from kstream_lab.workers.dlq import DeadLetter
from tests.support.paths import ROOT, free_port
from tests.support.processes import stop


def write_pipeline(tmp: Path, *, value_format: str = "avro", worker_overrides: dict | None = None) -> Path:
    """pipelines/orders.yaml with every topic renamed ``<name>-<suffix>``, formats and ports for this test."""
    suffix = uuid.uuid4().hex[:8]
    data = yaml.safe_load((ROOT / "pipelines" / "orders.yaml").read_text())
    rename = {name: f"{name}-{suffix}" for name in data["topics"]}
    topics = {}
    for name, body in data["topics"].items():
        body = dict(body)
        if body.get("value_format") == "avro" and value_format == "json":
            body["value_format"] = "json"
            body.pop("schema", None)
        topics[rename[name]] = body
    data["topics"] = topics
    for agg in data.get("aggregations", {}).values():
        agg["source"] = rename[agg["source"]]
    cs_port = free_port()
    workers = {
        "customer_service": {"port": cs_port},
        "order_service": {"port": free_port(), "output": rename["orders_raw"]},
        "enricher": {
            "input": rename["orders_raw"],
            "output": rename["orders_enriched"],
            "dlq": rename["orders_dlq"],
            "group_id": f"enricher-{suffix}",
            "transactional_id": f"enricher-{suffix}",
            "metrics_port": free_port(),
            "breaker_reset_ms": "2s",
        },
        "aggregator": {
            "input": rename["orders_enriched"],
            "output": rename["sales_aggregates"],
            "late": rename["orders_late"],
            "dlq": rename["orders_dlq"],
            "changelog": rename["order-aggregator-changelog"],
            "group_id": f"aggregator-{suffix}",
            "transactional_id": f"aggregator-{suffix}",
            "metrics_port": free_port(),
        },
        "sink": {
            "input": rename["sales_aggregates"],
            "dlq": rename["orders_dlq"],
            "group_id": f"sink-{suffix}",
            "target": f"duckdb://{tmp / 'sales.duckdb'}",
            "metrics_port": free_port(),
        },
    }
    for name, body in workers.items():  # each service keeps its principal (the ACLs are derived from it)
        if principal := data["workers"].get(name, {}).get("principal"):
            body["principal"] = principal
    for name, extra in (worker_overrides or {}).items():
        workers[name].update(extra)
    data["workers"] = workers
    (tmp / "schemas").symlink_to(ROOT / "pipelines" / "schemas")  # schemas live next to the pipeline file
    path = tmp / "orders.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class Pipeline:
    settings: Settings
    file: Path
    tmp: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # for every worker: e.g. another broker's KSTREAM_*

    @property
    def spec(self) -> PipelineSpec:
        return load_pipeline(self.file)

    @property
    def workers(self) -> WorkersConfig:
        return self.spec.workers

    def topic(self, role: str) -> str:
        return next(name for name in self.spec.topics if name.rsplit("-", 1)[0] == role)

    def set_window(self, size: str, grace: str) -> None:
        """Rewrite the aggregation window (before workers start): rate-limited runs need short windows."""
        data = yaml.safe_load(self.file.read_text())
        for agg in data["aggregations"].values():
            agg["window"] = {"size": size, "grace": grace}
        self.file.write_text(yaml.safe_dump(data, sort_keys=False))

    def set_sink_target(self, target: str) -> None:
        self.set_worker("sink", target=target)

    def set_worker(self, name: str, **fields) -> None:
        """Change fields of ``workers.<name>`` (before it starts), e.g. the enricher's ``cache_ttl_ms``."""
        data = yaml.safe_load(self.file.read_text())
        data["workers"][name].update(fields)
        self.file.write_text(yaml.safe_dump(data, sort_keys=False))

    def create_topics(self) -> None:
        apply_topics(self.settings, list(self.spec.topics.values()))

    def delete_topics(self) -> None:
        delete_topics(self.settings, list(self.spec.topics))

    # ---- processes ------------------------------------------------------------------------------
    def start(
        self,
        name: str,
        *,
        instance: int = 0,
        key: str | None = None,
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> subprocess.Popen:
        """Start worker ``name``; ``env`` adds to this process's environment (a principal's login)."""
        key = key or (name if instance == 0 else f"{name}-{instance}")
        log = (self.tmp / f"{key}.log").open("ab")
        cmd = worker_command(name, self.file, "--instance", str(instance), *(extra or []))
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **self.env, **(env or {})}
        )
        self.procs[key] = proc
        url = component(name).health_url(self.workers)
        if wait and url and instance == 0:  # instance n serves its metrics on port + n
            self.wait_http(url)
        return proc

    def wait_http(self, url: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{url} did not come up")

    def kill(self, key: str) -> None:
        proc = self.procs.pop(key)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def terminate(self, key: str, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM; return (exit code, seconds it took)."""
        proc = self.procs.pop(key)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout)
        return code, time.monotonic() - t0

    def stop_all(self) -> None:
        for key in list(self.procs):
            stop(self.procs.pop(key))

    def log(self, key: str) -> str:
        return (self.tmp / f"{key}.log").read_text(errors="replace")

    # ---- reading results ------------------------------------------------------------------------
    def sink_rows(self) -> list[dict]:
        """The sink's table, from DuckDB or from PostgreSQL as ``workers.sink.target`` says."""
        target = self.workers.sink.target or ""
        if target.startswith(("postgresql://", "postgres://")):
            from psycopg.errors import UndefinedTable

            from kstream_lab.sinks.postgres import read_aggregates as read_postgres

            try:
                return read_postgres(target)
            except UndefinedTable:  # the sink has not started yet
                return []
        path = self.tmp / "sales.duckdb"
        return read_aggregates(path) if path.exists() else []

    def read(self, role: str):
        return read_records(self.settings, self.topic(role))

    def decoded(self, role: str) -> list[tuple[bytes, dict]]:
        """(key, value) of every committed record of the topic, decoded with its declared format."""
        name = self.topic(role)
        decode = value_decoder(self.settings, self.spec.topic(name))
        return [(r.key, decode(r.value, SerdeContext(r.topic, r.partition, r.offset))) for r in self.read(role)]

    def aggregator_caught_up(self) -> bool:
        """The aggregator's group has committed past the last record of orders_enriched (a back-test
        sees it all): no committed record is left after its committed offsets. Not a comparison with
        the end offset: a transactional writer's commit marker sits after its last record, and a
        consumer commits the offset after the record, not after the marker. Reads only the tail."""
        topic = self.topic("orders_enriched")
        partitions = sorted(snapshot_bounds(self.settings, topic))
        committed = committed_offsets(self.settings, self.workers.aggregator.group_id, topic, partitions)
        return not read_records(self.settings, topic, start=committed)

    def wait_for(self, predicate, timeout: float, what: str, interval: float = 0.5, explain=None):
        """Polls ``predicate``; on timeout ``explain()`` (if given) says what differed, for CI logs."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            for key, proc in self.procs.items():
                if proc.poll() is not None:
                    raise AssertionError(f"{key} exited with {proc.returncode}:\n{self.log(key)[-3000:]}")
            time.sleep(interval)
        detail = f"\n{explain()}" if explain else ""
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")


def expected_rows(
    truth: pl.DataFrame, size_ms: int, grace_ms: int, tier_of: dict[str, str] | None = None
) -> dict[tuple, dict]:
    """(window_start, tier, partition) -> {total_cents, count, final} from the generator's truth.

    ``final`` follows docs/semantics.md §3: the partition watermark (max event time of its non-poison
    records) reached window_end + grace.
    """
    ok = truth.filter(pl.col("kind") == "ok")
    if tier_of is not None:
        ok = ok.with_columns(pl.col("order_id").replace_strict(tier_of, default=None).alias("tier"))
    wm = dict(truth.filter(pl.col("kind") != "poison").group_by("partition").agg(pl.col("timestamp").max()).iter_rows())
    grouped = ok.group_by("window_start", "tier", "partition").agg(
        pl.col("total_cents").sum().alias("total_cents"), pl.len().alias("count")
    )
    out = {}
    for ws, tier, p, total, count in grouped.iter_rows():
        out[(ws, tier, p)] = {"total_cents": total, "count": count, "final": ws + size_ms + grace_ms <= wm[p]}
    return out


def sink_by_key(rows: list[dict]) -> dict[tuple, dict]:
    return {
        (r["window_start"], r["tier"], r["source_partition"]): {
            "total_cents": r["total_cents"],
            "count": r["count"],
            "final": r["final"],
        }
        for r in rows
    }


def totals_per_window_tier(rows: dict[tuple, dict], *, final_only: bool) -> dict[tuple, int]:
    out: dict[tuple, int] = defaultdict(int)
    for (ws, tier, _p), v in rows.items():
        if v["final"] or not final_only:
            out[(ws, tier)] += v["total_cents"]
    return dict(out)


# ---- the pipeline tests' truth and checks -------------------------------------------------------

ORDERS = int(os.environ.get("KSTREAM_PIPELINE_ORDERS", "200000"))


def produce_with_truth(
    settings: Settings, topic: TopicSpec, serialize: Serializer, window: WindowSpec, truth_file: Path, **generator
) -> pl.DataFrame:
    """Generated orders into ``topic``, and the generator's truth for them (kept in ``truth_file``).

    ``generator`` is the rest of :func:`produce_orders`' keywords (count, seed, start_ms, rate, fractions).
    """
    produce_orders(settings, topic, serialize, window, truth=truth_file, progress=False, **generator)
    return pl.read_parquet(truth_file)


def produce_truth(
    pipe: Pipeline,
    count: int = ORDERS,
    seed: int = 7,
    *,
    late_fraction: float = 0.01,
    poison_fraction: float = 0.005,
    settings: Settings | None = None,
    **generator,
) -> pl.DataFrame:
    """Generated orders into the pipeline's orders_raw, in its declared format (as ``settings``'
    principal, default the pipeline's); the truth for them."""
    raw = pipe.spec.topic(pipe.topic("orders_raw"))
    settings = settings or pipe.settings
    return produce_with_truth(
        settings,
        raw,
        value_serializer(settings, raw),
        pipe.spec.aggregation().window,
        pipe.tmp / "truth.parquet",
        count=count,
        seed=seed,
        late_fraction=late_fraction,
        poison_fraction=poison_fraction,
        **generator,
    )


class BackgroundProducer(threading.Thread):
    """Produces ``count`` generated orders at ``rate``/s (so faults land mid-run) and keeps the truth."""

    def __init__(
        self,
        pipe: Pipeline,
        count: int,
        rate: float,
        seed: int = 11,
        settings: Settings | None = None,
        flush_timeout_s: float = 60.0,
    ) -> None:
        super().__init__(daemon=True)
        self.pipe, self.count, self.rate, self.seed, self.settings = pipe, count, rate, seed, settings
        self.flush_timeout_s = flush_timeout_s
        self.error: BaseException | None = None
        self.produced: pl.DataFrame | None = None

    def run(self) -> None:
        try:
            self.produced = produce_truth(
                self.pipe,
                self.count,
                self.seed,
                rate=self.rate,
                settings=self.settings,
                flush_timeout_s=self.flush_timeout_s,
            )
        except BaseException as exc:  # surfaced by truth()
            self.error = exc

    def truth(self) -> pl.DataFrame:
        self.join(300)
        if self.error:
            raise self.error
        assert self.produced is not None, "the producer did not finish within 300 s"
        return self.produced


def rows_diff(got: dict, expected: dict, limit: int = 8) -> str:
    """What a sink's rows lack, have extra and have different from the truth, a few of each."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    differ = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
    counts = f"{len(missing)} missing, {len(extra)} extra, {len(differ)} differ"
    lines = [f"{len(got)} rows, {len(expected)} expected: {counts}"]
    lines += [f"  missing {k}: {expected[k]}" for k in missing[:limit]]
    lines += [f"  extra {k}: {got[k]}" for k in extra[:limit]]
    lines += [f"  differs {k}: got {got[k]}, expected {expected[k]}" for k in differ[:limit]]
    return "\n".join(lines)


def sink_matches(pipe: Pipeline, expected: dict) -> bool:
    return sink_by_key(pipe.sink_rows()) == expected


def assert_pipeline_results(pipe: Pipeline, truth: pl.DataFrame, expected: dict) -> None:
    """Every check of the issue's first test, exact."""
    got = sink_by_key(pipe.sink_rows())
    assert got == expected
    finals = totals_per_window_tier(got, final_only=True)
    closed = {(ws, t) for (ws, t, _p), v in expected.items() if v["final"]}
    want = totals_per_window_tier({k: v for k, v in expected.items() if v["final"]}, final_only=True)
    assert finals == want and set(finals) == closed
    assert len(closed) > 0

    dlq = pipe.read("orders_dlq")
    poison = truth.filter(pl.col("kind") == "poison")
    assert len(dlq) == poison.height
    assert sorted(r.key.decode() for r in dlq) == sorted(poison["order_id"].to_list())
    letters = [DeadLetter.from_record(r.key, r.value, r.headers) for r in dlq]
    assert {d.source_topic for d in letters} == {pipe.topic("orders_raw")}
    assert {d.error_class for d in letters} <= {"DeserializationError", "InvalidRecordError"}
    assert all(d.attempts == 1 and d.source_offset >= 0 and d.failed_at > 0 for d in letters)

    late = pipe.read("orders_late")
    late_truth = truth.filter(pl.col("kind") == "late")
    assert len(late) == late_truth.height
    assert sorted(r.key.decode() for r in late) == sorted(late_truth["order_id"].to_list())

    final_keys = Counter(key for key, value in pipe.decoded("sales_aggregates") if value["final"])
    assert final_keys and max(final_keys.values()) == 1, "a window was emitted final more than once"
    assert len(final_keys) == sum(v["final"] for v in expected.values())
