"""librdkafka's log lines, one per fault instead of one per reconnect attempt.

While a broker is down librdkafka logs the same ``Connection refused`` line for every connection
attempt of every client, hundreds per process within a millisecond; the one line that says what
happened drowns. :class:`RepeatFilter` passes the first of a kind, drops its repeats for
``window_s`` seconds, and the next one after that says how many it stood for.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

# what varies between repeats of one fault: timings and librdkafka's counters
_VARYING = re.compile(r"\(after \d+ms in state \w+(?:, \d+ identical error\(s\) suppressed)?\)|\d+ms")


def fault_key(message: str) -> str:
    """``message`` without the parts that differ between repeats of the same fault."""
    return _VARYING.sub("", message)


class RepeatFilter(logging.Filter):
    """Per logger: the first record of a kind passes; its repeats within ``window_s`` are counted,
    not logged; the first after the window passes with `` (N more like it in the last Ns)``."""

    def __init__(self, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window_s, self.clock = window_s, clock
        self._seen: dict[str, tuple[float, int]] = {}  # key -> (when it last passed, repeats since)

    def filter(self, record: logging.LogRecord) -> bool:
        key = fault_key(record.getMessage())
        now = self.clock()
        passed = self._seen.get(key)
        if passed is not None and now - passed[0] < self.window_s:
            self._seen[key] = (passed[0], passed[1] + 1)
            return False
        if passed is not None and passed[1]:
            record.msg = f"{record.getMessage()} ({passed[1]} more like it in the last {now - passed[0]:.0f}s)"
            record.args = None
        if len(self._seen) > 1_000:  # bounded: forget the oldest kinds
            for old in sorted(self._seen, key=lambda k: self._seen[k][0])[:500]:
                del self._seen[old]
        self._seen[key] = (now, 0)
        return True
