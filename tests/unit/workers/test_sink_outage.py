"""The sink worker holds a batch while its database is unavailable: written once it answers, logged
once per outage, never reported written (so never committed) before it was."""

from __future__ import annotations

import threading

from kstream_lab.errors import DatabaseUnavailable
from kstream_lab.workers import sink as sink_module
from kstream_lab.workers.sink import SinkWorker


class FlakySink:
    def __init__(self, failures: int) -> None:
        self.failures, self.attempts, self.written = failures, 0, []

    def upsert(self, rows: list[dict]) -> int:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise DatabaseUnavailable("PostgreSQL at 127.0.0.1:5432/sales unavailable: Connection refused")
        self.written += rows
        return len(rows)


def worker(sink: FlakySink, stop: threading.Event) -> SinkWorker:
    return SinkWorker(None, None, decode=None, sink=sink, stop=stop)  # type: ignore[arg-type]


def test_a_held_batch_is_written_once_the_database_answers_and_logged_once(monkeypatch, caplog) -> None:
    monkeypatch.setattr(sink_module, "WRITE_RETRY_S", 0.001)
    sink, rows = FlakySink(failures=6), [{"k": 1}, {"k": 2}]
    w = worker(sink, threading.Event())
    with caplog.at_level("INFO", logger="kstream_lab.workers.sink"):
        assert w._write_with_retry(rows) is True
    assert sink.attempts == 7 and sink.written == rows and w.rows_written == 2
    assert caplog.text.count("unavailable") == 1 and caplog.text.count("holding the batch of 2 rows") == 1
    assert caplog.text.count("database answers again") == 1 and "6 failed writes" in caplog.text


def test_a_stop_during_the_outage_returns_false_with_nothing_written(monkeypatch) -> None:
    monkeypatch.setattr(sink_module, "WRITE_RETRY_S", 0.001)
    stop = threading.Event()
    sink = FlakySink(failures=1_000)
    w = worker(sink, stop)
    threading.Timer(0.2, stop.set).start()
    assert w._write_with_retry([{"k": 1}]) is False  # the caller returns without committing
    assert sink.written == [] and w.rows_written == 0 and sink.attempts > 1
