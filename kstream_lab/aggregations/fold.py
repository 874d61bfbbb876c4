"""The streaming engine: a pure fold over one input partition's records, in offset order.

docs/semantics.md §3, record by record: the partition watermark is the max event time seen so far; a
record is late when ``window_end + grace <= watermark`` as it stood before the record; a window
closes (and is emitted once with ``final=True``) when the watermark reaches ``window_end + grace``.
No Kafka and no state store in here: the aggregator worker feeds records in and persists
:meth:`PartitionWindows.changelog_entries`; the batch engine (batch.py) computes the same thing
vectorised.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kstream_lab.aggregations.spec import AggregationSpec
from kstream_lab.errors import StateError

WATERMARK_KEY = "__watermark__"
SPEC_KEY = "__spec__"


def initial_value(op: str) -> int | None:
    """A metric's accumulator before any record: 0 for sum/count, None (no value yet) for min/max."""
    return 0 if op in ("sum", "count") else None


def fold_value(op: str, acc: int | None, value: int | None) -> int | None:
    """One metric's accumulator after one more record's value (nulls are skipped, as SQL does)."""
    if op == "count":
        return (acc or 0) + 1
    if value is None:
        return acc
    if op == "sum":
        return (acc or 0) + value
    if acc is None:
        return value
    return min(acc, value) if op == "min" else max(acc, value)


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
        row: dict[str, Any] = {
            "source_partition": self.source_partition,
            "window_start": self.window_start,
            "window_end": self.window_end,
        }
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
class BatchSteps:
    """What a run of records did, by input position.

    ``closed`` holds the windows the run closed, in closing order, each with the position of the
    record whose event time closed it. ``updated`` holds the windows the run changed that are still
    open, each with the position of the last record that changed it: a consumer that emits these
    once per batch sees fewer updates, never different results (Kafka Streams' record cache does
    the same).
    """

    late: list[int] = field(default_factory=list)
    closed: list[tuple[int, WindowResult]] = field(default_factory=list)
    updated: list[tuple[int, WindowResult]] = field(default_factory=list)


def metric_columns(spec: AggregationSpec) -> list[str]:
    """The record fields the metrics read (besides the time field and the grouping)."""
    return sorted({m.field for m in spec.metrics.values() if m.field})


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
        """One record (the batch fold over a run of one, for callers that go record by record)."""
        spec = self.spec
        steps = self.process_columns(
            [int(record[spec.time_field])],
            [tuple(record.get(g) for g in spec.group_by)],
            {f: [record.get(f)] for f in metric_columns(spec)},
        )
        if steps.late:
            return Step(late=True)
        return Step(late=False, update=steps.updated[0][1], closed=tuple(w for _, w in steps.closed))

    def process_columns(
        self, times: Sequence[int], groups: Sequence[tuple], values: Mapping[str, Sequence[Any]]
    ) -> BatchSteps:
        """Fold a run of records, given as columns in offset order (docs/semantics.md §3).

        ``times`` are event times in epoch ms, ``groups`` the group-by tuples and ``values`` the
        metric fields' columns. Record by record: late if its window closed before it came (no
        state change); otherwise folded in, the watermark advanced, and windows that the new
        watermark reaches are closed. Columns instead of dicts, and a close check only when the
        watermark passes the earliest open window's end, keep this at about a microsecond a record.
        """
        size = self.spec.window.size_ms
        span = size + self.spec.window.grace_ms
        plan = [(name, m.op, values[m.field] if m.field else None) for name, m in self.spec.metrics.items()]
        windows, steps, touched = self.windows, BatchSteps(), {}
        wm = self.watermark
        next_close = self._next_close(span)
        for i, ts in enumerate(times):
            start = ts - ts % size
            if wm is not None and start + span <= wm:
                steps.late.append(i)
                continue
            key = (start, groups[i])
            acc = windows.get(key)
            if acc is None:
                acc = windows[key] = {name: initial_value(op) for name, op, _ in plan}
                if next_close is None or start + span < next_close:
                    next_close = start + span
            for name, op, column in plan:
                acc[name] = fold_value(op, acc[name], None if column is None else column[i])
            touched[key] = i
            if wm is None or ts > wm:
                wm = ts
                if next_close is not None and next_close <= wm:
                    next_close = self._close(wm, i, steps, touched)
        self.watermark = wm
        self.dirty.update(touched)
        steps.updated = [
            (i, self._result(k, final=False)) for k, i in sorted(touched.items(), key=lambda kv: _sort_key(kv[0]))
        ]
        return steps

    def _close(self, watermark: int, trigger: int, steps: BatchSteps, touched: dict) -> int | None:
        """Close every window the watermark reached; return the next window end + grace (or None)."""
        span = self.spec.window.size_ms + self.spec.window.grace_ms
        for k in sorted((k for k in self.windows if k[0] + span <= watermark), key=_sort_key):
            steps.closed.append((trigger, self._result(k, final=True)))
            del self.windows[k]
            touched.pop(k, None)
            self.dirty.discard(k)
            self.closed_keys.add(k)
        return self._next_close(span)

    def _next_close(self, span: int) -> int | None:
        """The watermark at which the earliest open window closes (None when none is open)."""
        return min(k[0] for k in self.windows) + span if self.windows else None

    def open_results(self) -> list[WindowResult]:
        return [self._result(k, final=False) for k in sorted(self.windows, key=_sort_key)]

    def _result(self, key: tuple[int, tuple], *, final: bool) -> WindowResult:
        start, group = key
        return WindowResult(
            self.partition, start, start + self.spec.window.size_ms, group, dict(self.windows[key]), final
        )

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
    def restore(
        cls, spec: AggregationSpec, partition: int, entries: Iterable[tuple[bytes, bytes | None]]
    ) -> PartitionWindows:
        """Rebuild state from changelog records in offset order (last write wins, None deletes).

        Raises StateError if the changelog was written under a different spec (window size, grace,
        grouping or metrics), because folding new records into old-shaped state would be silently
        wrong; and for a record that is not state (a key or value that is not this module's JSON,
        metrics of another shape), unless a later record of the same key replaces or deletes it --
        then it never mattered (the last word is what a compacted changelog keeps anyway).
        """
        state = cls(spec, partition)
        meta_key = f"{partition}:{WATERMARK_KEY}".encode()
        corrupt: dict[bytes, str] = {}  # key -> why its latest record is not state
        for k, v in entries:
            try:
                if k == meta_key:
                    state._restore_meta(v)
                else:
                    state._restore_window(k, v)
            except (ValueError, TypeError) as exc:
                corrupt[k] = str(exc)
                continue
            corrupt.pop(k, None)
        if corrupt:
            key, why = next(iter(corrupt.items()))
            more = f" (and {len(corrupt) - 1} more keys)" if len(corrupt) > 1 else ""
            raise StateError(
                f"changelog partition {partition}: the record with key {key[:200]!r} is not window state: {why}{more}",
                hint="nothing was processed or committed; restore the changelog or rebuild the state from the "
                "input (docs/reliability.md#bad-input)",
            )
        return state

    def _restore_meta(self, value: bytes | None) -> None:
        meta = json.loads(value) if value else {}
        if not isinstance(meta, dict) or not _int_or_none(meta.get("watermark")):
            raise ValueError(f"watermark record {(value or b'')[:200]!r} is not {{'watermark': int, 'spec': ...}}")
        if meta.get("spec") not in (None, self.spec.state_key()):
            raise StateError(
                f"changelog partition {self.partition} was written by another aggregation spec "
                f"({meta.get('spec')!r}); reset it or use a new application id"
            )
        self.watermark = meta.get("watermark")

    def _restore_window(self, key: bytes, value: bytes | None) -> None:
        try:
            parsed = json.loads(key)
        except ValueError:
            if value is None:  # a tombstone deletes whatever the key held: state or not, nothing is left
                return
            raise
        if not (
            isinstance(parsed, list)
            and len(parsed) == 3
            and all(isinstance(x, int) and not isinstance(x, bool) for x in parsed[:2])
            and isinstance(parsed[2], list)
            and len(parsed[2]) == len(self.spec.group_by)
        ):
            if value is None:
                return
            raise ValueError(f"the key is not [partition, window_start, [{', '.join(self.spec.group_by)}]]")
        p, start, group = parsed
        if p != self.partition:
            return
        if value is None:
            self.windows.pop((start, tuple(group)), None)
            return
        metrics = json.loads(value)
        if not isinstance(metrics, dict) or set(metrics) != set(self.spec.metrics):
            raise ValueError(f"value {value[:200]!r} does not hold the metrics {sorted(self.spec.metrics)}")
        if not all(_int_or_none(m) for m in metrics.values()):
            raise ValueError(f"value {value[:200]!r} has a metric that is not an integer")
        self.windows[(start, tuple(group))] = metrics


def _int_or_none(value: object) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _sort_key(key: tuple[int, tuple]) -> tuple:
    start, group = key
    return (start, tuple((g is None, "" if g is None else str(g)) for g in group))


def fold_partition(
    spec: AggregationSpec, partition: int, records: Sequence[Mapping[str, Any]], *, batch: int | None = None
):
    """Run the streaming engine over a whole partition in runs of ``batch`` records (all at once by
    default), as the aggregator does per consumed batch: (final windows, open windows, late indices)."""
    state = PartitionWindows(spec, partition)
    finals: list[WindowResult] = []
    late: list[int] = []
    step = batch or max(1, len(records))
    fields = metric_columns(spec)
    for at in range(0, len(records), step):
        run = records[at : at + step]
        steps = state.process_columns(
            [int(r[spec.time_field]) for r in run],
            [tuple(r.get(g) for g in spec.group_by) for r in run],
            {f: [r.get(f) for r in run] for f in fields},
        )
        late += [at + i for i in steps.late]
        finals += [w for _, w in steps.closed]
    return finals, state.open_results(), late
