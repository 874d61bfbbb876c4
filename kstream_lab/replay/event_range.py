"""Back-tests over an event-time range: judge the windows whose start lies in ``[t_from, t_to)``.

A user asks about "yesterday's windows", not offsets. The offsets to read follow from the time
field alone (a projected read of it), per partition in offset order:

* **start**: the last offset before which every event time is ``< t_from``. The records before it
  can neither fall into a window starting at or after ``t_from`` (a window holds no record older
  than its start), nor close one (the watermark they leave is below ``t_from``), so the sub-range
  rule of docs/semantics.md §5 judges every window starting in the range -- and reading from there
  instead of the partition's beginning is exact, not an approximation widened by a guess.
* **end**: one past the first offset at which the watermark reaches the close of the last window
  starting before ``t_to`` (tumbling and hopping windows are epoch-aligned, so that window is known;
  for sliding and session windows ``t_to + size (gap) + grace`` bounds it), where every window
  starting in the range has closed; capped at the aggregator's committed offsets. A window still
  open there (a session that keeps growing, or a range the aggregator has not reached) is reported
  ``open``, not judged.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from kstream_lab.aggregations.spec import AggregationSpec
from kstream_lab.errors import ConfigError
from kstream_lab.replay.reader import RangeError, parse_position


def event_time_ms(value: str | int | datetime, option: str, now_ms: int | None = None) -> int:
    """``value`` as epoch ms: a datetime, an ISO time, ``@<epoch ms>``, ``15m ago`` or ``now``."""
    now = int(datetime.now(UTC).timestamp() * 1000) if now_ms is None else now_ms
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"@{value}"  # an int here is a time, not an offset
    try:
        kind, ms = parse_position(value, now_ms=now)
    except RangeError as exc:
        raise ConfigError(f"{option}: {exc.message}", hint="an ISO time, @<epoch ms>, '2h ago' or 'now'") from None
    if kind != "time" or not isinstance(ms, int):
        raise ConfigError(
            f"{option}: {value!r} is not a time", hint="an ISO time, @<epoch ms>, '2h ago' or 'now' (not an offset)"
        )
    return ms


def event_offsets(
    times: pl.DataFrame, spec: AggregationSpec, t_from: int, t_to: int, ranges: dict[int, tuple[int, int]]
) -> dict[int, tuple[int, int]]:
    """Per partition of ``ranges``, the ``[start, end)`` offsets that decide every window starting in
    ``[t_from, t_to)`` (see the module doc). ``times``: partition, offset and the spec's time field of
    the records of ``ranges``."""
    if t_to <= t_from:
        raise ConfigError(f"--event-to ({t_to}) must be after --event-from ({t_from})")
    w = spec.window
    if w.type in ("tumbling", "hopping"):  # epoch-aligned: the last window starting before t_to is known
        step = int(w.size_ms if w.type == "tumbling" else w.advance_ms or 0)
        closes_at = (t_to - 1) - (t_to - 1) % step + w.size_ms + w.grace_ms
    else:  # sliding and session windows start at record times: any start before t_to
        closes_at = t_to + int((w.gap_ms if w.type == "session" else w.size_ms) or 0) + w.grace_ms
    ts = pl.col(spec.time_field).cast(pl.Int64)
    marked = (
        times.sort("partition", "offset")
        .with_columns(
            ts.cum_max().shift(1).over("partition").alias("before"),  # max event time of the records before
            ts.cum_max().over("partition").alias("through"),
        )
        .group_by("partition")
        .agg(
            pl.col("offset").filter(pl.col("before").is_null() | (pl.col("before") < t_from)).max().alias("start"),
            (pl.col("offset").filter(pl.col("through") >= closes_at).min() + 1).alias("end"),
        )
    )
    found = {int(p): (s, e) for p, s, e in marked.iter_rows()}
    out = {}
    for p, (low, high) in ranges.items():
        start, end = found.get(p, (None, None))
        start = high if start is None else int(start)  # no record at all: nothing to read
        end = high if end is None else min(int(end), high)
        out[p] = (max(low, start), max(max(low, start), end))
    return out


__all__ = ["event_offsets", "event_time_ms"]
