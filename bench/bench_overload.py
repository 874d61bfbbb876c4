"""The order service under overload: the accepted rate it sustains and the latency of its 202.

Locust (headless, 127.0.0.1, ``KSTREAM_BENCH_OVERLOAD_USERS`` closed-loop users, no think time: each
posts again as soon as it is answered) drives ``POST /orders`` for ``KSTREAM_BENCH_OVERLOAD_SECONDS``
with the whole pipeline running (customer service, enricher, aggregator, sink), in two settings of
the producer-queue bound, each ``KSTREAM_BENCH_REPEAT`` runs, alternating:

* ``default_bound``: the pipeline file's ``queue_max_orders`` (10,000). The broker keeps up, the
  queue never fills: the service itself (one process, one event loop) is the limit, and the users
  wait for it. Its accepted rate is the order service's ceiling with the pipeline running (#22's
  target: >= 2,000 orders/s).
* ``small_bound``: ``queue_max_orders`` 16, as in tests/chaos/test_overload.py: far more orders in
  flight than it may hold, so it sheds: 503 + Retry-After at once for the rest.

Per run, over the steady part (after ``KSTREAM_BENCH_OVERLOAD_WARMUP`` s): ``accepted_per_s`` (202s
completed per second), ``refused_per_s`` (503s), p50/p99/max of the 202's latency as the client saw
it, the order service's peak RSS and CPU seconds (and per answer), and Locust's own CPU seconds (it
shares the 2 cores).
After each run every 202 is checked against the sink (``sink_count == accepted``). Medians of the
runs are reported beside every run.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_pipeline import pipeline_copy
from bench.bench_replay import local_cluster

RESULTS = Path(__file__).resolve().parent / "results"
USERS = int(os.environ.get("KSTREAM_BENCH_OVERLOAD_USERS", "64"))
SECONDS = float(os.environ.get("KSTREAM_BENCH_OVERLOAD_SECONDS", "20"))
WARMUP = float(os.environ.get("KSTREAM_BENCH_OVERLOAD_WARMUP", "5"))
REPEAT = int(os.environ.get("KSTREAM_BENCH_REPEAT", "3"))
BOUNDS = {"default_bound": None, "small_bound": 16}  # None: the pipeline file's queue_max_orders
TARGET_ACCEPTED_PER_S = 2000  # issue #22, with the pipeline running


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process (from /proc, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def percentiles(xs: list[float]) -> dict:
    xs = sorted(xs)
    q = lambda p: round(1000 * xs[min(len(xs) - 1, int(p * len(xs)))], 1)  # noqa: E731
    return {"p50": q(0.5), "p99": q(0.99), "max": round(1000 * xs[-1], 1)}


def steady_figures(answers: list[dict]) -> dict:
    """Rates and the 202's latency over [first start + WARMUP, first start + SECONDS]."""
    t0 = min(a["start"] for a in answers)
    lo, hi = t0 + WARMUP, t0 + SECONDS
    done = [a for a in answers if lo <= a["start"] + a["latency_s"] < hi]
    accepted = [a for a in done if a["status"] == 202]
    refused = [a for a in done if a["status"] == 503]
    return {
        "accepted_per_s": round(len(accepted) / (hi - lo), 1),
        "refused_per_s": round(len(refused) / (hi - lo), 1),
        "other_answers": len([a for a in answers if a["status"] not in (202, 503)]),
        "latency_202_ms": percentiles([a["latency_s"] for a in accepted]) if accepted else {},
        "latency_503_ms": percentiles([a["latency_s"] for a in refused]) if refused else {},
        "retry_after": sorted({a["retry_after"] for a in refused if a["retry_after"]}),
    }


def one_run(settings, tmp: Path, bound: int | None) -> dict:
    from tests.support.overload import RssSampler, run_locust, set_worker_config
    from tests.support.pipeline import Pipeline

    path = pipeline_copy(tmp)
    if bound is not None:
        set_worker_config(path, "order_service", queue_max_orders=bound)
    pipe = Pipeline(settings, path, path.parent)
    pipe.create_topics()
    try:
        for name in ("customer-service", "order-service", "enricher", "aggregator", "sink"):
            pipe.start(name)
        pid = pipe.procs["order-service"].pid
        rss, service_cpu, locust_cpu = RssSampler(pid), cpu_seconds(pid), children_cpu()
        idle_mb = rss.rss_mb()
        rss.start()
        answers = run_locust(
            f"http://127.0.0.1:{pipe.workers.order_service.port}",
            path.parent / "answers.jsonl",
            users=USERS,
            seconds=SECONDS,
            log=path.parent / "locust.log",
        )
        peak_mb = rss.stop()
        service_cpu, locust_cpu = cpu_seconds(pid) - service_cpu, children_cpu() - locust_cpu
        accepted = sum(a["status"] == 202 for a in answers)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (counted := sum(r["count"] for r in pipe.sink_rows())) < accepted:
            time.sleep(0.5)
        return {
            **steady_figures(answers),
            "answers": len(answers),
            "accepted": accepted,
            "sink_count": counted,
            "idle_rss_mb": round(idle_mb, 1),
            "peak_rss_mb": round(peak_mb, 1),
            "service_cpu_s": round(service_cpu, 1),
            "service_cpu_ms_per_answer": round(1000 * service_cpu / len(answers), 2),
            "locust_cpu_s": round(locust_cpu, 1),
        }
    finally:
        pipe.stop_all()
        pipe.delete_topics()


def summarize(runs: list[dict]) -> dict:
    def median(get) -> float:
        return round(statistics.median(get(r) for r in runs), 1)

    return {
        "accepted_per_s": median(lambda r: r["accepted_per_s"]),
        "refused_per_s": median(lambda r: r["refused_per_s"]),
        "latency_202_p50_ms": median(lambda r: r["latency_202_ms"]["p50"]),
        "latency_202_p99_ms": median(lambda r: r["latency_202_ms"]["p99"]),
        "peak_rss_mb": median(lambda r: r["peak_rss_mb"]),
        "service_cpu_ms_per_answer": round(statistics.median(r["service_cpu_ms_per_answer"] for r in runs), 2),
        "every_202_in_the_sink": all(r["sink_count"] == r["accepted"] for r in runs),
        "runs": runs,
    }


def main() -> None:
    from kstream_lab.pipeline_spec import OrderServiceConfig

    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpu",
        "python": sys.version.split()[0],
        "users": USERS,
        "seconds": SECONDS,
        "warmup_s": WARMUP,
        "repeat": REPEAT,
        "load_average_at_start": os.getloadavg(),
    }
    runs: dict[str, list[dict]] = {name: [] for name in BOUNDS}
    with local_cluster() as settings, tempfile.TemporaryDirectory(prefix="kstream-bench-overload-") as tmp:
        for i in range(REPEAT):
            order = list(BOUNDS) if i % 2 == 0 else list(reversed(BOUNDS))  # alternate: the load drifts
            for name in order:
                run = one_run(settings, Path(tmp), BOUNDS[name])
                runs[name].append(run)
                print(name, i, json.dumps(run), flush=True)
    results["load_average_at_end"] = os.getloadavg()
    for name, bound in BOUNDS.items():
        results[name] = {"queue_max_orders": bound or OrderServiceConfig().queue_max_orders, **summarize(runs[name])}
    accepted = results["default_bound"]["accepted_per_s"]
    results["targets"] = {"accepted_per_s": TARGET_ACCEPTED_PER_S, "met": accepted >= TARGET_ACCEPTED_PER_S}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "overload.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k not in BOUNDS}, indent=2))
    for name in BOUNDS:
        print(name, json.dumps({k: v for k, v in results[name].items() if k != "runs"}))


if __name__ == "__main__":
    main()
