"""The exact replay cache: re-reading a 1M-record Avro range warm, beside the cold read, in one run.

Targets (#21): the warm re-read at least 10x faster than a cold read, and the cold read that fills
the cache at most 15 % slower than a cold read without it. In ``KSTREAM_BENCH_REPEAT`` rounds
(default 3) of the three variants back to back on the same topic and broker:

* ``cold``: ``replay(topic, cache=False)``, the read every re-run paid before;
* ``fill``: the cache cleared, then ``replay(topic, cache=True)``: the same read, keeping the frames
  (the Parquet is written by a background thread: ``fill_persisted`` is the time until it is on disk);
* ``warm``: ``replay(topic, cache=True)`` again in the same process (a notebook re-running a cell):
  served from the in-process tier;
* ``warm_disk``: the in-process tier emptied first (a new kernel): served from the Parquet segments.

Each warm frame is checked equal to the cold one. Figures are medians, ratios the median of the
per-round ratios; every round is kept in the JSON. Size with KSTREAM_BENCH_RECORDS (default 1M).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

from bench.bench_replay import RECORDS, RESULTS, local_cluster, produce

REPEAT = int(os.environ.get("KSTREAM_BENCH_REPEAT", "3"))


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    import kstream_lab
    from kstream_lab.replay import cache

    with local_cluster() as settings:
        topic = produce(settings, "avro")
        rounds = []
        for _ in range(REPEAT):
            cold_s, cold = timed(lambda: kstream_lab.replay(topic, settings=settings, cache=False))
            cache.clear(settings)
            t = time.perf_counter()
            fill_s, _ = timed(lambda: kstream_lab.replay(topic, settings=settings, cache=True))
            cache.flush()
            persisted_s = time.perf_counter() - t
            warm_s, warm = timed(lambda: kstream_lab.replay(topic, settings=settings, cache=True))
            cache.forget_memory()
            disk_s, disk = timed(lambda: kstream_lab.replay(topic, settings=settings, cache=True))
            assert warm.equals(cold) and disk.equals(cold), "cached reads must equal the cold one"
            assert cold.height > 0.99 * RECORDS
            rounds.append(
                {
                    "cold_s": cold_s,
                    "fill_s": fill_s,
                    "fill_persisted_s": persisted_s,
                    "warm_s": warm_s,
                    "warm_disk_s": disk_s,
                    "rows": cold.height,
                }
            )
            print(rounds[-1], flush=True)
        size = sum(e.bytes for e in cache.entries(settings))
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0] if k.endswith("_s")}
    result = {
        "bench": "replay_cache",
        "records": RECORDS,
        "format": "avro",
        "rounds": rounds,
        "median": med,
        "warm_speedup_x": statistics.median(r["cold_s"] / r["warm_s"] for r in rounds),
        "warm_disk_speedup_x": statistics.median(r["cold_s"] / r["warm_disk_s"] for r in rounds),
        "fill_overhead_pct": 100 * statistics.median(r["fill_s"] / r["cold_s"] - 1 for r in rounds),
        "fill_persisted_overhead_pct": 100 * statistics.median(r["fill_persisted_s"] / r["cold_s"] - 1 for r in rounds),
        "cache_bytes": size,
        "targets": {"warm_speedup_x": ">= 10", "fill_overhead_pct": "<= 15"},
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "replay_cache.json").write_text(json.dumps(result, indent=2) + "\n")
    keys = ("median", "warm_speedup_x", "warm_disk_speedup_x", "fill_overhead_pct", "fill_persisted_overhead_pct")
    print(json.dumps({k: result[k] for k in keys}, indent=2))


if __name__ == "__main__":
    main()
