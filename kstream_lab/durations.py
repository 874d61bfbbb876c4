"""Human durations ("60s", "10m", "1h30m", "500ms") <-> milliseconds."""

from __future__ import annotations

import re

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_PART = re.compile(r"(\d+)(ms|s|m|h|d)")


def parse_duration_ms(value: str | int) -> int:
    """Parse ``"90s"``/``"1h30m"``/``500`` (plain numbers are milliseconds)."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"duration must not be negative: {value}")
        return value
    text = value.strip().replace(" ", "")
    if text.isdigit():
        return int(text)
    pos, total = 0, 0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {value!r} (use e.g. 500ms, 10s, 15m, 1h30m, 2d)")
    return total
