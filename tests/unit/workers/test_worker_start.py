"""A worker's start while the schema registry cannot be reached: wait and retry, never exit."""

from __future__ import annotations

import threading

import pytest

from kstream_lab.kafka.schema_registry import RegistryError
from kstream_lab.workers import runner


def flaky(failures: list[RegistryError]):
    calls: list[int] = []

    def build(settings, spec, stop, instance):
        calls.append(instance)
        if failures:
            raise failures.pop(0)
        return "worker"

    return build, calls


def test_unreachable_and_5xx_are_retried_until_the_registry_answers(monkeypatch, caplog):
    monkeypatch.setattr(runner, "START_RETRY_S", 0.001)
    build, calls = flaky([RegistryError("did not answer", status=0), RegistryError("busy", status=503)])
    with caplog.at_level("WARNING", logger="kstream_lab.workers.runner"):
        assert runner.build_when_dependencies_answer(build, None, None, threading.Event(), 7) == "worker"
    assert calls == [7, 7, 7] and caplog.text.count("schema registry unavailable at start") == 2


def test_a_refusal_is_raised_and_a_stop_ends_the_wait(monkeypatch):
    build, calls = flaky([RegistryError("incompatible", status=409, code=409)])
    with pytest.raises(RegistryError, match="incompatible"):
        runner.build_when_dependencies_answer(build, None, None, threading.Event(), 0)
    stop = threading.Event()
    stop.set()  # SIGTERM while waiting: no worker, a clean exit
    build, calls = flaky([RegistryError("did not answer", status=0)] * 5)
    assert runner.build_when_dependencies_answer(build, None, None, stop, 0) is None and calls == [0]


def test_the_sinks_database_unreachable_at_start_is_waited_for(monkeypatch, caplog):
    from kstream_lab.errors import DatabaseUnavailable

    monkeypatch.setattr(runner, "START_RETRY_S", 0.001)
    build, calls = flaky([DatabaseUnavailable("PostgreSQL at 127.0.0.1:5432/s unavailable: Connection refused")])
    with caplog.at_level("WARNING", logger="kstream_lab.workers.runner"):
        assert runner.build_when_dependencies_answer(build, None, None, threading.Event(), 0) == "worker"
    assert calls == [0, 0] and caplog.text.count("sink database unavailable at start") == 1
