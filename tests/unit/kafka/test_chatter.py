"""librdkafka's repeated lines collapse to one per fault, with the count of what was dropped."""

from __future__ import annotations

import logging

from kstream_lab.kafka.chatter import RepeatFilter, fault_key

REFUSED = (
    "FAIL [rdkafka#producer-1] [thrd:127.0.0.1:9092/bootstrap]: 127.0.0.1:9092/bootstrap: "
    "Connect to ipv4#127.0.0.1:9092 failed: Connection refused (after {ms}ms in state CONNECT)"
)


def record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("kstream_lab.kafka.rdkafka", logging.ERROR, __file__, 1, msg, None, None)


def test_repeats_of_one_fault_pass_once_per_window_with_their_count():
    now = [0.0]
    f = RepeatFilter(window_s=10.0, clock=lambda: now[0])
    passed = []
    for i in range(300):  # one outage: 300 attempts in 3 s
        now[0] = i * 0.01
        r = record(REFUSED.format(ms=i % 7))
        if f.filter(r):
            passed.append(r.getMessage())
    assert len(passed) == 1
    now[0] = 12.0
    r = record(REFUSED.format(ms=0))
    assert f.filter(r)
    assert r.getMessage().endswith("(299 more like it in the last 12s)")
    other = record("FAIL [rdkafka#consumer-2] [thrd:GroupCoordinator]: GroupCoordinator: Disconnected")
    assert f.filter(other) and other.getMessage().endswith("Disconnected")


def test_the_key_ignores_timings_only():
    assert fault_key(REFUSED.format(ms=0)) == fault_key(REFUSED.format(ms=203))
    assert fault_key(REFUSED.format(ms=0)) != fault_key(REFUSED.format(ms=0).replace("producer-1", "producer-2"))
