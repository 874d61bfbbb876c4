"""The chaos suite's broker: its own local broker and registry, which its tests may SIGKILL."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.chaos import ChaosKafka


@pytest.fixture(scope="session")
def chaos_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosKafka]:
    kafka = ChaosKafka.start(tmp_path_factory.mktemp("kstream-chaos"))
    yield kafka
    kafka.stop()


@pytest.fixture
def chaos_pipeline(chaos_kafka: ChaosKafka, tmp_path: Path) -> Iterator:
    """An isolated copy of the order pipeline on the chaos broker; stopped and deleted afterwards."""
    from tests.support.pipeline import Pipeline, write_pipeline

    pipe = Pipeline(chaos_kafka.settings, write_pipeline(tmp_path), tmp_path, env=chaos_kafka.env)
    pipe.create_topics()
    yield pipe
    pipe.stop_all()
    if chaos_kafka.broker.pid() is None:  # a test that failed with the broker down leaves it restarted
        chaos_kafka.restart_broker()
    if not os.environ.get("KSTREAM_TEST_KEEP_TOPICS"):  # kept: inspect the logs (kafka DumpLogSegments)
        pipe.delete_topics()


# `make chaos` records the suite's last result (outcome and seconds of every test) in bench/results/:
# the suite is too heavy for `make test`'s 40 minutes, so its record is what a reader can check.
_OUTCOMES: dict[str, dict] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not os.environ.get("KSTREAM_CHAOS_SUITE_RESULTS"):
        return
    entry = _OUTCOMES.setdefault(report.nodeid, {"outcome": "passed", "seconds": 0.0})
    entry["seconds"] = round(entry["seconds"] + report.duration, 1)
    if report.failed:
        entry["outcome"] = "failed" if report.when == "call" else f"error in {report.when}"
    elif report.skipped and entry["outcome"] == "passed":
        entry["outcome"] = "xfailed" if hasattr(report, "wasxfail") else "skipped"


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get("KSTREAM_CHAOS_SUITE_RESULTS")
    if not target or not _OUTCOMES:
        return
    tally: dict[str, int] = {}
    for entry in _OUTCOMES.values():
        tally[entry["outcome"]] = tally.get(entry["outcome"], 0) + 1
    record = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "command": "pytest -m chaos",
        "scale_orders": os.environ.get("KSTREAM_CHAOS_SCALE_ORDERS", "the test's default"),
        "tally": tally,
        "seconds": round(sum(e["seconds"] for e in _OUTCOMES.values()), 1),
        "tests": _OUTCOMES,
    }
    Path(target).write_text(json.dumps(record, indent=2) + "\n")
