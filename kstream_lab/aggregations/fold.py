"""The streaming engine: a pure fold over one input partition's records, in offset order.

DESIGN.md section 3, record by record: the partition watermark is the max event time seen so far; a
record is late when ``window_end + grace <= watermark`` as it stood before the record; a window
closes (and is emitted once with ``final=True``) when the watermark reaches ``window_end + grace``.
No Kafka and no state store in here: the aggregator worker feeds records in and persists
:meth:`PartitionWindows.changelog_entries`; the batch engine (batch.py) computes the same thing
vectorised.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kstream_lab.aggregations.spec import AggregationSpec, MetricSpec

WATERMARK_KEY = "__watermark__"
SPEC_KEY = "__spec__"


def initial(metric: MetricSpec) -> int | None:
    return 0 if metric.op in ("sum", "count") else None


def fold(metric: MetricSpec, acc: int | None, record: Mapping[str, Any]) -> int | None:
    """One metric's accumulator after one more record (nulls are skipped, as SQL does)."""
    if metric.op == "count":
        return (acc or 0) + 1
    value = record.get(metric.field)  # type: ignore[arg-type]
    if value is None:
        return acc
    if metric.op == "sum":
        return (acc or 0) + value
    if acc is None:
        return value
    return min(acc, value) if metric.op == "min" else max(acc, value)


def window_start(ts: int, size_ms: int) -> int:
    """Epoch-aligned tumbling window start (floor, also for negative timestamps)."""
    return ts - ts % size_ms


@dataclass(frozen=True)
class WindowResult:
    """One window's aggregate for one source partition; ``final`` once the window has closed."""

    source_partition: int
    window_start: int
    window_end: int
    group: tuple
    metrics: dict[str, int | None]
    final: bool

    def as_row(self, spec: AggregationSpec) -> dict[str, Any]:
        row = {"source_partition": self.source_partition, "window_start": self.window_start,
               "window_end": self.window_end}
        row.update(zip(spec.group_by, self.group, strict=True))
        row.update(self.metrics)
        row["final"] = self.final
        return row


@dataclass(frozen=True)
class Step:
    """What one record did: late (no state change), or an update plus any windows it closed."""

    late: bool
    update: WindowResult | None = None
    closed: tuple[WindowResult, ...] = ()


@dataclass
class PartitionWindows:
    """Open windows and the watermark of one input partition."""

    spec: AggregationSpec
    partition: int
    watermark: int | None = None
    windows: dict[tuple[int, tuple], dict[str, int | None]] = field(default_factory=dict)
    dirty: set[tuple[int, tuple]] = field(default_factory=set)
    closed_keys: set[tuple[int, tuple]] = field(default_factory=set)

    def process(self, record: Mapping[str, Any]) -> Step:
        spec, size, grace = self.spec, self.spec.window.size_ms, self.spec.window.grace_ms
        ts = int(record[spec.time_field])
        start = window_start(ts, size)
        if self.watermark is not None and start + size + grace <= self.watermark:
            return Step(late=True)
        key = (start, tuple(record.get(g) for g in spec.group_by))
        acc = self.windows.get(key)
        if acc is None:
            acc = {name: initial(m) for name, m in spec.metrics.items()}
            self.windows[key] = acc
        for name, metric in spec.metrics.items():
            acc[name] = fold(metric, acc[name], record)
        self.dirty.add(key)
        self.watermark = ts if self.watermark is None else max(self.watermark, ts)
        return Step(late=False, update=self._result(key, final=False), closed=self._close_due())

    def open_results(self) -> list[WindowResult]:
        return [self._result(k, final=False) for k in sorted(self.windows, key=_sort_key)]

    def _close_due(self) -> tuple[WindowResult, ...]:
        size, grace = self.spec.window.size_ms, self.spec.window.grace_ms
        due = sorted((k for k in self.windows if k[0] + size + grace <= self.watermark), key=_sort_key)
        out = tuple(self._result(k, final=True) for k in due)
        for k in due:
            del self.windows[k]
            self.dirty.discard(k)
            self.closed_keys.add(k)
        return out

    def _result(self, key: tuple[int, tuple], *, final: bool) -> WindowResult:
        start, group = key
        return WindowResult(self.partition, start, start + self.spec.window.size_ms, group,
                            dict(self.windows[key]), final)

    # ---- changelog: the state as compacted key/value pairs ---------------------------------
    def changelog_entries(self) -> list[tuple[bytes, bytes | None]]:
        """State changes since the last call: upserts for dirty windows, tombstones for closed ones."""
        out: list[tuple[bytes, bytes | None]] = []
        for key in sorted(self.dirty, key=_sort_key):
            out.append((self._state_key(key), json.dumps(self.windows[key]).encode()))
        for key in sorted(self.closed_keys, key=_sort_key):
            out.append((self._state_key(key), None))
        if self.dirty or self.closed_keys:
            meta = {"watermark": self.watermark, "spec": self.spec.state_key()}
            out.append((f"{self.partition}:{WATERMARK_KEY}".encode(), json.dumps(meta).encode()))
        self.dirty.clear()
        self.closed_keys.clear()
        return out

    def _state_key(self, key: tuple[int, tuple]) -> bytes:
        start, group = key
        return json.dumps([self.partition, start, list(group)]).encode()

    @classmethod
    def restore(cls, spec: AggregationSpec, partition: int,
                entries: Iterable[tuple[bytes, bytes | None]]) -> PartitionWindows:
        """Rebuild state from changelog records in offset order (last write wins, None deletes).

        Raises ValueError if the changelog was written under a different spec (window size, grace,
        grouping or metrics), because folding new records into old-shaped state would be silently wrong.
        """
        state = cls(spec, partition)
        meta_key = f"{partition}:{WATERMARK_KEY}".encode()
        for k, v in entries:
            if k == meta_key:
                meta = json.loads(v) if v else {}
                if meta.get("spec") not in (None, spec.state_key()):
                    raise ValueError(f"changelog partition {partition} was written by another aggregation spec "
                                     f"({meta.get('spec')!r}); reset it or use a new application id")
                state.watermark = meta.get("watermark")
                continue
            p, start, group = json.loads(k)
            if p != partition:
                continue
            if v is None:
                state.windows.pop((start, tuple(group)), None)
            else:
                state.windows[(start, tuple(group))] = json.loads(v)
        return state


def _sort_key(key: tuple[int, tuple]) -> tuple:
    start, group = key
    return (start, tuple((g is None, "" if g is None else str(g)) for g in group))


def fold_partition(spec: AggregationSpec, partition: int, records: Iterable[Mapping[str, Any]]):
    """Run the streaming engine over a whole partition: (final windows, open windows, late indices)."""
    state = PartitionWindows(spec, partition)
    finals: list[WindowResult] = []
    late: list[int] = []
    for i, rec in enumerate(records):
        step = state.process(rec)
        if step.late:
            late.append(i)
        finals.extend(step.closed)
    return finals, state.open_results(), late
