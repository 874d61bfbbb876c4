"""Overload runs of the order service: Locust against it, its RSS sampled, the truth of what it accepted.

Shared by the chaos test (tests/chaos/test_overload.py) and the benchmark (bench/bench_overload.py).
Locust runs in a subprocess (it monkey-patches the standard library with gevent on import) on
127.0.0.1, headless, for a bounded time; its users wait for their in-flight request when the time is
up (``--stop-timeout``), so every answer the service gave is recorded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import yaml

from kstream_lab.aggregations.spec import WindowSpec
from kstream_lab.generator.customers import loyalty_tier_for
from kstream_lab.generator.produce import truth_schema
from tests.support.paths import ROOT

LOCUSTFILE = ROOT / "tests" / "support" / "locust_orders.py"


def set_worker_config(pipeline_file: Path, worker: str, **values: object) -> None:
    """Rewrite keys of one worker's section of the pipeline file (before it starts)."""
    data = yaml.safe_load(pipeline_file.read_text())
    data["workers"][worker].update(values)
    pipeline_file.write_text(yaml.safe_dump(data, sort_keys=False))


def run_locust(url: str, out: Path, *, users: int, seconds: float, log: Path) -> list[dict]:
    """Locust's :class:`OrderUser` against ``url`` with ``users`` closed-loop users for ``seconds``
    (all spawned in the first second); every answer, in the order they came."""
    if importlib.util.find_spec("locust") is None:  # find_spec does not import it (gevent patching)
        raise AssertionError("locust is not installed: it is in the dev extra (make setup)")
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        url,
        "--users",
        str(users),
        "--spawn-rate",
        str(users),
        "--run-time",
        f"{seconds:g}s",
        "--stop-timeout",
        "30",
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--exit-code-on-error",
        "0",
    ]
    with log.open("wb") as sink:
        done = subprocess.run(
            cmd,
            cwd=ROOT,
            env={**os.environ, "KSTREAM_LOCUST_OUT": str(out)},
            stdout=sink,
            stderr=subprocess.STDOUT,
            timeout=seconds + 90,
        )
    if done.returncode != 0:
        raise AssertionError(f"locust exited with {done.returncode}:\n{log.read_text()[-3000:]}")
    return [json.loads(line) for line in out.read_text().splitlines()]


class RssSampler(threading.Thread):
    """Samples a process's resident set size (``VmRSS``, MB) every ``interval`` s until stopped."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []  # (monotonic time, MB)
        self._halt = threading.Event()

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.pid}/status").read_text()
        kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return kb / 1024

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.samples.append((time.monotonic(), self.rss_mb()))
            except (OSError, StopIteration):  # the process is gone
                return
            self._halt.wait(self.interval)

    def stop(self) -> float:
        """Stop sampling; the peak RSS in MB."""
        self._halt.set()
        self.join(5)
        return max(mb for _t, mb in self.samples)


def accepted_truth(answers: list[dict], window: WindowSpec) -> pl.DataFrame:
    """The orders answered 202 as a generator truth frame (tests.support.pipeline.expected_rows reads
    it): partition, offset and timestamp from the 202, the tier the customer service serves, and
    ``kind`` by the generator's rule -- late when, in offset order within its partition, its window
    (plus grace) had closed below the watermark the orders before it had raised."""
    rows = sorted((a["accepted"]["partition"], a["accepted"]["offset"], a) for a in answers if a["status"] == 202)
    watermark: dict[int, int] = {}
    out = []
    for partition, offset, a in rows:
        ts = a["accepted"]["timestamp"]
        start = ts - ts % window.size_ms
        late = start + window.size_ms + window.grace_ms <= watermark.get(partition, -(2**62))
        watermark[partition] = max(watermark.get(partition, ts), ts)
        out.append(
            {
                "order_id": a["accepted"]["order_id"],
                "partition": partition,
                "offset": offset,
                "kind": "late" if late else "ok",
                "timestamp": ts,
                "window_start": start,
                "tier": loyalty_tier_for(a["customer_id"]),
                "customer_id": a["customer_id"],
                "total_cents": a["total_cents"],
            }
        )
    schema = {**truth_schema(), "offset": pl.Int64}  # and where its 202 said it was stored
    return pl.DataFrame(out, schema=schema)
