"""The streaming engine: a pure fold over one input partition's records, in offset order.

docs/semantics.md §3 and §7, record by record: the partition watermark is the max event time seen so
far (over every record, filtered or not); a record is late when every window that could hold it had
closed before it came; otherwise it is folded into each of its windows that is still open; a window
closes (and is emitted once with ``final=True``) when the watermark reaches ``window_end + grace``.
No Kafka and no state store in here: the aggregator worker feeds records in and persists
:meth:`PartitionWindows.changelog_entries`; the batch engine (batch.py) computes the same thing
vectorised.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from heapq import heappop, heappush
from itertools import count
from math import gcd
from typing import Any

from kstream_lab.aggregations.spec import AggregationSpec
from kstream_lab.errors import StateError

WATERMARK_KEY = "__watermark__"
SPEC_KEY = "__spec__"
BUFFER = "buffer"  # the changelog key tag of a sliding window group's buffered records


def initial_value(op: str) -> Any:
    """A metric's accumulator before any record: 0 for sum/count, [0, 0] (sum, n) for mean, an empty
    set for count_distinct, None (no value yet) for min/max/first/last."""
    if op in ("sum", "count"):
        return 0
    if op == "mean":
        return [0, 0]
    if op == "count_distinct":
        return set()
    return None


def fold_value(op: str, acc: Any, value: Any, seq: int = 0) -> Any:
    """One metric's accumulator after one more record's value (nulls are skipped, as SQL does).

    ``seq`` is the record's position in offset order; first/last keep it ([seq, value]) so that two
    session windows' accumulators can be merged (:func:`merge_value`)."""
    if op == "count":
        return (acc or 0) + 1
    if value is None:
        return acc
    if op == "sum":
        return (acc or 0) + value
    if op == "mean":
        acc[0] += value
        acc[1] += 1
        return acc
    if op == "count_distinct":
        acc.add(value)
        return acc
    if op == "first":
        return acc if acc is not None else [seq, value]
    if op == "last":
        return [seq, value]
    if acc is None:
        return value
    return min(acc, value) if op == "min" else max(acc, value)


def merge_value(op: str, a: Any, b: Any) -> Any:
    """Two accumulators of the same metric as one (session windows merging)."""
    if op in ("sum", "count"):
        return a + b
    if op == "mean":
        return [a[0] + b[0], a[1] + b[1]]
    if op == "count_distinct":
        return a | b
    if a is None or b is None:
        return b if a is None else a
    if op == "first":
        return a if a[0] <= b[0] else b
    if op == "last":
        return a if a[0] >= b[0] else b
    return min(a, b) if op == "min" else max(a, b)


def output_value(op: str, acc: Any) -> int | None:
    """The metric's value as emitted. ``mean`` is sum/count rounded to the nearest integer, halves
    upwards (toward +infinity), exactly in integers: ``(2*sum + n) // (2*n)``; null with no values."""
    if op == "mean":
        return None if acc[1] == 0 else (2 * acc[0] + acc[1]) // (2 * acc[1])
    if op == "count_distinct":
        return len(acc)
    if op in ("first", "last"):
        return None if acc is None else acc[1]
    return acc


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
    metrics: dict[str, Any]
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


Key = tuple[int, tuple]


@dataclass
class PartitionWindows:
    """Open windows and the watermark of one input partition.

    ``windows`` maps (window start, group) to the metrics' accumulators. Session windows also keep
    each session's last event time (``last``); sliding windows keep, per group, the window starts
    their records generated (``starts``) and the records that a window created later may still have
    to hold (``buffer``: event time, watermark before it, metric values), both bounded by the
    window size and grace.
    """

    spec: AggregationSpec
    partition: int
    watermark: int | None = None
    windows: dict[Key, dict[str, Any]] = field(default_factory=dict)
    dirty: set[Key] = field(default_factory=set)
    closed_keys: set[Key] = field(default_factory=set)
    last: dict[Key, int] = field(default_factory=dict)
    sessions: dict[tuple, set[int]] = field(default_factory=dict)
    starts: dict[tuple, list[int]] = field(default_factory=dict)
    buffer: dict[tuple, list[tuple[int, int | None, tuple]]] = field(default_factory=dict)
    dirty_groups: set[tuple] = field(default_factory=set)
    seq: int = 0
    _written_watermark: int | None = field(default=None, repr=False)
    _through: int | None = field(default=None, repr=False)
    _heap: list[tuple[int, int, Key]] = field(default_factory=list, repr=False)
    _order: Iterator[int] = field(default_factory=count, repr=False)

    def __post_init__(self) -> None:
        w = self.spec.window
        self.kind, self.grace = w.type, w.grace_ms
        self.size = w.size_ms
        # the half-open length of a fixed-size window: sliding windows are [start, start + size] inclusive
        self.length = w.size_ms + 1 if w.type == "sliding" else w.size_ms
        self.gap = w.gap_ms or 0
        self.hop = w.hop_ms
        self.pane = gcd(self.size, self.hop) if w.type == "hopping" else self.hop  # divides size and advance
        fields = metric_columns(self.spec)
        self._plan = [(n, m.op, fields.index(m.field) if m.field else None) for n, m in self.spec.metrics.items()]

    def process(self, record: Mapping[str, Any]) -> Step:
        """One record (the batch fold over a run of one, for callers that go record by record).

        The record's fields are used as they are: a filter or derived fields are the caller's
        (kstream_lab.aggregations.inputs evaluates them over whole batches)."""
        spec = self.spec
        steps = self.process_columns(
            [int(record[spec.time_field])],
            [tuple(record.get(g) for g in spec.group_by)],
            {f: [record.get(f)] for f in metric_columns(spec)},
        )
        if steps.late:
            return Step(late=True)
        update = steps.updated[0][1] if steps.updated else None
        return Step(late=False, update=update, closed=tuple(w for _, w in steps.closed))

    def process_columns(
        self,
        times: Sequence[int],
        groups: Sequence[tuple],
        values: Mapping[str, Sequence[Any]],
        keep: Sequence[bool] | None = None,
    ) -> BatchSteps:
        """Fold a run of records, given as columns in offset order (docs/semantics.md §3, §7).

        ``times`` are event times in epoch ms, ``groups`` the group-by tuples, ``values`` the
        metric fields' columns and ``keep`` the filter's result (None: every record). Record by
        record: a record the filter drops only advances the watermark; a late one changes nothing;
        the others are folded into their open windows, the watermark advances, and windows the new
        watermark reaches are closed.
        """
        if self.kind == "hopping":
            steps = self._hopping(times, groups, values, keep)
            self.seq += len(times)
            return steps
        if self.kind == "tumbling":
            steps, touched = self._tumbling(times, groups, values, keep)
        else:
            steps, touched = self._generic(times, groups, values, keep)
        self.seq += len(times)
        self.dirty.update(touched)
        steps.updated = [
            (i, self._result(k, final=False)) for k, i in sorted(touched.items(), key=lambda kv: _sort_key(kv[0]))
        ]
        return steps

    def _tumbling(
        self, times: Sequence[int], groups: Sequence[tuple], values: Mapping[str, Sequence[Any]], keep: Any
    ) -> tuple[BatchSteps, dict[Key, int]]:
        """Columns instead of dicts, and a close check only when the watermark passes the earliest
        open window's end, keep this at about a microsecond a record."""
        size = self.size
        span = size + self.grace
        plan = [(name, m.op, values[m.field] if m.field else None) for name, m in self.spec.metrics.items()]
        windows, steps, touched = self.windows, BatchSteps(), {}
        wm = self.watermark
        next_close = self._next_close()
        seq = self.seq
        for i, ts in enumerate(times):
            if keep is None or keep[i]:
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
                    acc[name] = fold_value(op, acc[name], None if column is None else column[i], seq + i)
                touched[key] = i
            if wm is None or ts > wm:
                wm = ts
                if next_close is not None and next_close <= wm:
                    next_close = self._close(wm, i, steps, touched)
        self.watermark = wm
        return steps, touched

    # ---- hopping, sliding and session windows ------------------------------------------------
    def _generic(
        self, times: Sequence[int], groups: Sequence[tuple], values: Mapping[str, Sequence[Any]], keep: Any
    ) -> tuple[BatchSteps, dict[Key, int]]:
        fields = metric_columns(self.spec)
        columns = [values[f] for f in fields]
        fold = self._fold_sliding if self.kind == "sliding" else self._fold_session
        steps, touched = BatchSteps(), dict[Key, int]()
        wm = self.watermark
        next_close = self._next_close()
        for i, ts in enumerate(times):
            if keep is None or keep[i]:
                if wm is not None and self._late(ts, wm):
                    steps.late.append(i)
                    continue
                vals = tuple(c[i] for c in columns)
                close = fold(ts, groups[i], vals, self.seq + i, wm, touched, i)
                if close is not None and (next_close is None or close < next_close):
                    next_close = close
            if wm is None or ts > wm:
                wm = ts
                if next_close is not None and next_close <= wm:
                    next_close = self._close(wm, i, steps, touched)
        self.watermark = wm
        if self.kind == "sliding":
            self._prune_sliding()
        return steps, touched

    def _late(self, ts: int, wm: int) -> bool:
        """Every window that could hold a record at ``ts`` had closed (docs/semantics.md §7.1)."""
        if self.kind == "session":
            return ts + self.grace <= wm
        if self.kind == "sliding":
            return ts + self.length + self.grace <= wm  # even [ts, ts + size], the last to close
        return ts - ts % self.hop + self.length + self.grace <= wm  # the latest-starting window

    def _fold_into(self, acc: dict[str, Any], vals: tuple, seq: int) -> None:
        for name, op, at in self._plan:
            acc[name] = fold_value(op, acc[name], None if at is None else vals[at], seq)

    def _new_acc(self) -> dict[str, Any]:
        return {name: initial_value(m.op) for name, m in self.spec.metrics.items()}

    def _open(self, key: Key) -> dict[str, Any]:
        acc = self.windows.get(key)
        if acc is None:
            acc = self.windows[key] = self._new_acc()
            self.closed_keys.discard(key)
        return acc

    # ---- hopping windows: folded into panes of `advance`, combined when emitted -------------------
    def _hopping(
        self, times: Sequence[int], groups: Sequence[tuple], values: Mapping[str, Sequence[Any]], keep: Any
    ) -> BatchSteps:
        """Hopping windows as panes: ``windows`` holds one accumulator per (pane start, group), the
        pane ``[k·advance, (k+1)·advance)``; a window is the merge of the panes it covers, computed
        when it is emitted. Folding a record once (not into each of its ⌈size/advance⌉ windows) keeps
        this at the speed of tumbling windows. It is the per-window rule exactly: a window that
        closed was emitted from its panes as they were, so a record folded into a pane later counts
        only in the pane's windows still open; a pane is dropped when its last window closes."""
        hop, pane_len, span = self.hop, self.pane, self.size + self.grace
        plan = [(name, m.op, values[m.field] if m.field else None) for name, m in self.spec.metrics.items()]
        panes, steps, touched = self.windows, BatchSteps(), dict[Key, int]()
        wm = self.watermark
        next_close = self._next_hop_close()
        seq = self.seq
        for i, ts in enumerate(times):
            if keep is None or keep[i]:
                if wm is not None and ts - ts % hop + span <= wm:  # even its latest window had closed
                    steps.late.append(i)
                    continue
                key = (ts - ts % pane_len, groups[i])
                acc = panes.get(key)
                if acc is None:
                    acc = panes[key] = {name: initial_value(op) for name, op, _ in plan}
                    self.closed_keys.discard(key)
                    close = self._hop_close_for(key[0], wm)
                    if next_close is None or close < next_close:
                        next_close = close
                for name, op, column in plan:
                    acc[name] = fold_value(op, acc[name], None if column is None else column[i], seq + i)
                touched[key] = i
            if wm is None or ts > wm:
                before, wm = wm, ts
                if next_close is not None and next_close <= wm:
                    self.watermark = wm
                    self._close_hopping(i, steps, touched, self._closed_through(before))
                    next_close = self._next_hop_close()
        self.watermark = wm
        self._through = self._closed_through()
        self.dirty.update(touched)
        latest: dict[Key, int] = {}
        for (pane, group), i in touched.items():
            for start in self._open_windows_of(pane):
                latest[(start, group)] = max(i, latest.get((start, group), -1))
        steps.updated = [
            (i, self._hop_result(k, final=False)) for k, i in sorted(latest.items(), key=lambda kv: _sort_key(kv[0]))
        ]
        return steps

    def _closed_through(self, watermark: int | None | bool = False) -> int | None:
        """The latest window start whose window has closed at ``watermark`` (default: the current
        one); windows close in start order."""
        wm = self.watermark if watermark is False else watermark
        if wm is None:
            return None
        edge = wm - self.size - self.grace
        return edge - edge % self.hop

    def _next_hop_close(self) -> int | None:
        """The watermark at which the next window closes (None when no pane is held)."""
        if not self.windows:
            return None
        return self._hop_close_for(min(k[0] for k in self.windows), self.watermark)

    def _hop_close_for(self, pane: int, watermark: int | None) -> int:
        """The watermark at which the earliest still open window holding ``pane`` closes."""
        start = self._first_window_of(pane)
        if watermark is not None:
            edge = watermark - self.size - self.grace
            start = max(start, edge - edge % self.hop + self.hop)
        return start + self.size + self.grace

    def _first_window_of(self, pane: int) -> int:
        """The earliest window start (a multiple of advance) whose window holds the pane."""
        low = pane - self.size + 1
        return low + (-low) % self.hop

    def _open_windows_of(self, pane: int) -> range:
        """Starts of the windows holding ``pane`` that are still open."""
        low, through = self._first_window_of(pane), self._through
        if through is not None and through + self.hop > low:
            low = through + self.hop
        return range(low, pane - pane % self.hop + 1, self.hop)

    def _close_hopping(self, trigger: int, steps: BatchSteps, touched: dict, before: int | None) -> None:
        """Emit every window the watermark reached that holds a pane (those after ``before``, the
        last start closed at the previous watermark); drop panes no open window holds."""
        through = self._closed_through()
        assert through is not None
        closing: set[Key] = set()
        for pane, group in self.windows:
            low = self._first_window_of(pane)
            if before is not None and before + self.hop > low:
                low = before + self.hop
            closing.update((s, group) for s in range(low, min(pane - pane % self.hop, through) + 1, self.hop))
        for key in sorted(closing, key=_sort_key):
            steps.closed.append((trigger, self._hop_result(key, final=True)))
        for key in [k for k in self.windows if k[0] - k[0] % self.hop <= through]:  # its last window closed
            del self.windows[key]
            touched.pop(key, None)
            self.dirty.discard(key)
            self.closed_keys.add(key)
        self._through = through

    def _hop_result(self, key: Key, *, final: bool) -> WindowResult:
        start, group = key
        acc = self._new_acc()
        for pane in range(start, start + self.size, self.pane):
            part = self.windows.get((pane, group))
            if part is not None:
                acc = {n: merge_value(m.op, acc[n], part[n]) for n, m in self.spec.metrics.items()}
        metrics = {n: output_value(m.op, acc[n]) for n, m in self.spec.metrics.items()}
        return WindowResult(self.partition, start, start + self.size, group, metrics, final)

    def _fold_session(
        self, ts: int, group: tuple, vals: tuple, seq: int, wm: int | None, touched: dict, i: int
    ) -> int | None:
        """Into the session within ``gap`` of ts, merging the sessions it bridges (or a new one)."""
        gap, starts = self.gap, self.sessions.setdefault(group, set())
        merged = [s for s in starts if s - gap <= ts <= self.last[(s, group)] + gap]
        start, last = min([ts, *merged]), max([ts, *(self.last[(s, group)] for s in merged)])
        acc = self._new_acc()
        for s in merged:
            old = self.windows.pop((s, group))
            acc = {n: merge_value(m.op, acc[n], old[n]) for n, m in self.spec.metrics.items()}
            del self.last[(s, group)]
            starts.discard(s)
            touched.pop((s, group), None)
            self.dirty.discard((s, group))
            self.closed_keys.add((s, group))  # a tombstone: the session lives on under its new start
        self._fold_into(acc, vals, seq)
        key = (start, group)
        self.windows[key], self.last[key] = acc, last
        self._push(key)
        self.closed_keys.discard(key)
        starts.add(start)
        touched[key] = i
        return last + gap + self.grace

    def _fold_sliding(
        self, ts: int, group: tuple, vals: tuple, seq: int, wm: int | None, touched: dict, i: int
    ) -> int | None:
        """Kafka Streams' sliding windows: a record generates the windows [ts - size, ts] (it enters)
        and [ts + 1, ts + 1 + size] (it has left); a generated window exists once it holds a record,
        and holds each record in its range for which it was still open when the record came."""
        size, length, grace = self.size, self.length, self.grace

        def is_open(s: int, w: int | None) -> bool:
            return w is None or s + length + grace > w

        gen = self.starts.setdefault(group, [])
        buf = self.buffer.setdefault(group, [])
        new = []
        for s in (ts - size, ts + 1):
            if is_open(s, wm):
                at = bisect_left(gen, s)
                if at == len(gen) or gen[at] != s:
                    gen.insert(at, s)
                    new.append(s)
        earliest = None
        for s in gen[bisect_left(gen, ts - size) : bisect_right(gen, ts)]:
            if not is_open(s, wm):
                continue
            key = (s, group)
            acc = self.windows.get(key)
            if acc is None:
                acc = self._from_buffer(s, buf) or self._new_acc()
                self.windows[key] = acc
                self._push(key)
                self.closed_keys.discard(key)
            self._fold_into(acc, vals, seq)
            touched[key] = i
            earliest = s + length + grace if earliest is None else min(earliest, s + length + grace)
        for s in new:
            key = (s, group)
            if s > ts and key not in self.windows:
                acc = self._from_buffer(s, buf)
                if acc is not None:
                    self.windows[key] = acc
                    self._push(key)
                    self.closed_keys.discard(key)
                    touched[key] = i
                    earliest = s + length + grace if earliest is None else min(earliest, s + length + grace)
        buf.append((ts, wm, vals))
        self.dirty_groups.add(group)
        return earliest

    def _from_buffer(self, start: int, buf: list[tuple[int, int | None, tuple]]) -> dict[str, Any] | None:
        """A new sliding window's accumulators over the buffered records it holds (None: none)."""
        end, acc = start + self.size, None
        for n, (t, w, vals) in enumerate(buf):
            if start <= t <= end and (w is None or start + self.length + self.grace > w):
                if acc is None:
                    acc = self._new_acc()
                self._fold_into(acc, vals, n)  # sliding windows never merge: any increasing seq will do
        return acc

    def _prune_sliding(self) -> None:
        """Forget starts whose windows closed and records no window still to come can hold."""
        wm = self.watermark
        if wm is None:
            return
        closed_below = wm - self.length - self.grace  # s <= this: closed
        keep_above = wm - 2 * self.size - 2 - self.grace  # t <= this: no future window holds it
        for group in list(self.starts):
            gen, buf = self.starts[group], self.buffer.get(group, [])
            cut = bisect_right(gen, closed_below)
            kept = [r for r in buf if r[0] > keep_above]
            if cut or len(kept) != len(buf):
                self.dirty_groups.add(group)
                del gen[:cut]
                self.buffer[group] = kept

    # ---- closing ---------------------------------------------------------------------------
    def _close_point(self, key: Key) -> int:
        """The watermark at which the window closes: window_end + grace."""
        if self.kind == "session":
            return self.last[key] + self.gap + self.grace
        return key[0] + self.length + self.grace

    def _push(self, key: Key) -> None:
        """Session and sliding windows: remember when the window closes (a heap; stale entries of
        merged or extended sessions are skipped when they surface)."""
        heappush(self._heap, (self._close_point(key), next(self._order), key))

    def _close(self, watermark: int, trigger: int, steps: BatchSteps, touched: dict) -> int | None:
        """Close every window the watermark reached; return the next window end + grace (or None)."""
        if self.kind == "tumbling":
            ready = [k for k in self.windows if self._close_point(k) <= watermark]
        else:
            heap, found = self._heap, set()
            while heap and heap[0][0] <= watermark:
                cp, _, k = heappop(heap)
                if k in self.windows and self._close_point(k) == cp:
                    found.add(k)
            ready = list(found)
        for k in sorted(ready, key=_sort_key):
            steps.closed.append((trigger, self._result(k, final=True)))
            del self.windows[k]
            if self.kind == "session":
                del self.last[k]
                self.sessions[k[1]].discard(k[0])
            touched.pop(k, None)
            self.dirty.discard(k)
            self.closed_keys.add(k)
        return self._next_close()

    def _next_close(self) -> int | None:
        """The watermark at which the earliest open window closes (None when none is open)."""
        if not self.windows:
            return None
        if self.kind == "tumbling":
            return min(k[0] for k in self.windows) + self.length + self.grace
        heap = self._heap
        while heap and (heap[0][2] not in self.windows or self._close_point(heap[0][2]) != heap[0][0]):
            heappop(heap)
        return heap[0][0] if heap else None

    def open_results(self) -> list[WindowResult]:
        if self.kind == "hopping":
            keys = {(s, g) for p, g in self.windows for s in self._open_windows_of(p)}
            return [self._hop_result(k, final=False) for k in sorted(keys, key=_sort_key)]
        return [self._result(k, final=False) for k in sorted(self.windows, key=_sort_key)]

    def _result(self, key: Key, *, final: bool) -> WindowResult:
        start, group = key
        end = self.last[key] + self.gap if self.kind == "session" else start + self.length
        acc = self.windows[key]
        metrics = {n: output_value(m.op, acc[n]) for n, m in self.spec.metrics.items()}
        return WindowResult(self.partition, start, end, group, metrics, final)

    # ---- changelog: the state as compacted key/value pairs ---------------------------------
    def changelog_entries(self) -> list[tuple[bytes, bytes | None]]:
        """State changes since the last call: upserts for dirty windows, tombstones for closed (and,
        for sessions, merged-away) ones, a sliding group's buffer, then the watermark record."""
        out: list[tuple[bytes, bytes | None]] = []
        for key in sorted(self.dirty, key=_sort_key):
            out.append((self._state_key(key), json.dumps(self._state_value(key)).encode()))
        for key in sorted(self.closed_keys, key=_sort_key):
            out.append((self._state_key(key), None))
        for group in sorted(self.dirty_groups, key=_group_sort):
            gen, buf = self.starts.get(group, []), self.buffer.get(group, [])
            value = {"starts": gen, "records": [[t, w, list(v)] for t, w, v in buf]} if gen or buf else None
            if value is None:
                self.starts.pop(group, None)
                self.buffer.pop(group, None)
            tag = json.dumps([self.partition, BUFFER, list(group)]).encode()
            out.append((tag, None if value is None else json.dumps(value).encode()))
        if self.dirty or self.closed_keys or self.dirty_groups or self.watermark != self._written_watermark:
            meta: dict[str, Any] = {"watermark": self.watermark, "spec": self.spec.state_key()}
            if self.kind in ("session", "hopping"):  # their accumulators merge: first/last compare seqs
                meta["seq"] = self.seq
            out.append((f"{self.partition}:{WATERMARK_KEY}".encode(), json.dumps(meta).encode()))
            self._written_watermark = self.watermark
        self.dirty.clear()
        self.closed_keys.clear()
        self.dirty_groups.clear()
        return out

    def _state_key(self, key: Key) -> bytes:
        start, group = key
        return json.dumps([self.partition, start, list(group)]).encode()

    def _state_value(self, key: Key) -> Any:
        acc = self.windows[key]
        metrics = {n: _encode_acc(m.op, acc[n]) for n, m in self.spec.metrics.items()}
        return {"last": self.last[key], "metrics": metrics} if self.kind == "session" else metrics

    @classmethod
    def restore(
        cls, spec: AggregationSpec, partition: int, entries: Iterable[tuple[bytes, bytes | None]]
    ) -> PartitionWindows:
        """Rebuild state from changelog records in offset order (last write wins, None deletes).

        Raises StateError if the changelog was written under a different spec (window kind, size,
        grace, filter, grouping or metrics), because folding new records into old-shaped state would
        be silently wrong; and for a record that is not state (a key or value that is not this
        module's JSON, metrics of another shape), unless a later record of the same key replaces or
        deletes it -- then it never mattered (the last word is what a compacted changelog keeps anyway).
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
        for start, group in state.windows:
            if state.kind == "session":
                state.sessions.setdefault(group, set()).add(start)
            if state.kind in ("session", "sliding"):
                state._push((start, group))
        state._written_watermark = state.watermark
        state._through = state._closed_through() if state.kind == "hopping" else None
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
        seq = meta.get("seq", 0)
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise ValueError(f"watermark record {(value or b'')[:200]!r} has a seq that is not an integer")
        self.watermark, self.seq = meta.get("watermark"), seq

    def _restore_window(self, key: bytes, value: bytes | None) -> None:
        try:
            parsed = json.loads(key)
        except ValueError:
            if value is None:  # a tombstone deletes whatever the key held: state or not, nothing is left
                return
            raise
        buffer_key = self.kind == "sliding" and isinstance(parsed, list) and len(parsed) == 3 and parsed[1] == BUFFER
        if not (
            isinstance(parsed, list)
            and len(parsed) == 3
            and isinstance(parsed[0], int)
            and not isinstance(parsed[0], bool)
            and (buffer_key or (isinstance(parsed[1], int) and not isinstance(parsed[1], bool)))
            and isinstance(parsed[2], list)
            and len(parsed[2]) == len(self.spec.group_by)
        ):
            if value is None:
                return
            raise ValueError(f"the key is not [partition, window_start, [{', '.join(self.spec.group_by)}]]")
        p, start, group = parsed
        if p != self.partition:
            return
        group = tuple(group)
        if buffer_key:
            self._restore_buffer(group, value)
            return
        if value is None:
            self.windows.pop((start, group), None)
            self.last.pop((start, group), None)
            return
        body = json.loads(value)
        if self.kind == "session":
            if not isinstance(body, dict) or set(body) != {"last", "metrics"} or not _is_int(body["last"]):
                raise ValueError(f"value {value[:200]!r} is not a session's {{'last': int, 'metrics': {{...}}}}")
            self.last[(start, group)] = body["last"]
            body = body["metrics"]
        if not isinstance(body, dict) or set(body) != set(self.spec.metrics):
            raise ValueError(f"value {value[:200]!r} does not hold the metrics {sorted(self.spec.metrics)}")
        self.windows[(start, group)] = {n: _decode_acc(m.op, body[n], value) for n, m in self.spec.metrics.items()}

    def _restore_buffer(self, group: tuple, value: bytes | None) -> None:
        if value is None:
            self.starts.pop(group, None)
            self.buffer.pop(group, None)
            return
        body = json.loads(value)
        width = len(metric_columns(self.spec))
        ok = (
            isinstance(body, dict)
            and set(body) == {"starts", "records"}
            and isinstance(body["starts"], list)
            and all(_is_int(s) for s in body["starts"])
            and isinstance(body["records"], list)
            and all(
                isinstance(r, list)
                and len(r) == 3
                and _is_int(r[0])
                and _int_or_none(r[1])
                and isinstance(r[2], list)
                and len(r[2]) == width
                for r in body["records"]
            )
        )
        if not ok:
            raise ValueError(
                f"value {value[:200]!r} is not a sliding window buffer {{'starts': [...], 'records': [...]}}"
            )
        self.starts[group] = sorted(body["starts"])
        self.buffer[group] = [(t, w, tuple(v)) for t, w, v in body["records"]]


def _encode_acc(op: str, acc: Any) -> Any:
    if op == "count_distinct":
        return sorted(acc, key=lambda v: (type(v).__name__, v))
    return acc


def _decode_acc(op: str, acc: Any, value: bytes) -> Any:
    if op in ("sum", "count", "min", "max"):
        if not _int_or_none(acc):
            raise ValueError(f"value {value[:200]!r} has a metric that is not an integer")
        return acc
    if op == "mean":
        if not (isinstance(acc, list) and len(acc) == 2 and all(_is_int(x) for x in acc)):
            raise ValueError(f"value {value[:200]!r} has a mean that is not [sum, count]")
        return acc
    if op == "count_distinct":
        if not isinstance(acc, list) or any(isinstance(x, list | dict) for x in acc):
            raise ValueError(f"value {value[:200]!r} has a count_distinct that is not a list of values")
        return set(acc)
    if acc is not None and not (isinstance(acc, list) and len(acc) == 2 and _is_int(acc[0])):
        raise ValueError(f"value {value[:200]!r} has a {op} that is not [seq, value]")
    return acc


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_or_none(value: object) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _group_sort(group: tuple) -> tuple:
    return tuple((g is None, "" if g is None else str(g)) for g in group)


def _sort_key(key: tuple[int, tuple]) -> tuple:
    start, group = key
    return (start, _group_sort(group))


Prepare = Callable[[dict[str, list[Any]], int], tuple[dict[str, list[Any]], list[bool] | None]]


def fold_partition(
    spec: AggregationSpec,
    partition: int,
    records: Sequence[Mapping[str, Any]],
    *,
    batch: int | None = None,
    prepare: Prepare | None = None,
):
    """Run the streaming engine over a whole partition in runs of ``batch`` records (all at once by
    default), as the aggregator does per consumed batch: (final windows, open windows, late indices).

    ``prepare`` turns a run's columns into (columns with derived fields, filter mask), as the
    aggregator does with kstream_lab.aggregations.inputs.evaluate_columns; without it the records'
    fields are used as they are."""
    state = PartitionWindows(spec, partition)
    finals: list[WindowResult] = []
    late: list[int] = []
    step = batch or max(1, len(records))
    fields = metric_columns(spec)
    for at in range(0, len(records), step):
        run = records[at : at + step]
        keep = None
        if prepare is not None:
            names = {k for r in run for k in r}
            cols, keep = prepare({k: [r.get(k) for r in run] for k in sorted(names)}, len(run))
        else:
            cols = {k: [r.get(k) for r in run] for k in {spec.time_field, *spec.group_by, *fields}}
        steps = state.process_columns(
            [int(t) for t in cols[spec.time_field]],
            list(zip(*[cols[g] for g in spec.group_by], strict=True)) if spec.group_by else [()] * len(run),
            {f: cols[f] for f in fields},
            keep,
        )
        late += [at + i for i in steps.late]
        finals += [w for _, w in steps.closed]
    return finals, state.open_results(), late
