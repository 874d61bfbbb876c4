"""A live tail for notebooks: the newest records of a topic as they arrive, decoded like replay.

``tail(topic)`` starts at the end (or at ``start``: an offset, a time, ``"5m ago"``, ...) and, every
``every``, reads what was committed since through the one bounded-read engine (``read_range`` over a
range whose end is the last stable offset snapshotted at that poll: read_committed, so an open or
aborted transaction never shows). One :class:`BatchDecoder` serves every poll, so the frames of a
tail have the columns and dtypes a replay of the same records has. No consumer group is joined and
no offset is committed: the reads assign partitions, as replay does.

A notebook cell must end, so a tail is bounded: it stops after ``max_records`` records or
``max_seconds`` seconds, whichever comes first, or when the kernel is interrupted (then it returns
what it has). In a Jupyter kernel it shows a status line, a live chart of records/s per poll
(Vega-Lite) and the newest ``show`` records (``kstream_lab.readable``), each redrawn in place
through an IPython display handle, so a cell's output stays one block however long it follows.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from kstream_lab.durations import parse_duration_ms
from kstream_lab.errors import KStreamLabError
from kstream_lab.kafka.read import snapshot_bounds
from kstream_lab.replay.decode import BatchDecoder
from kstream_lab.replay.reader import PartitionRange, Position, ReplayRange, parse_position, read_range, resolve_range
from kstream_lab.settings import Settings, get_settings

# Kafka's rule for topic names (what the broker accepts), checked before anything is asked of it.
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
# A poll: the offsets to read from per partition -> (decoded frame, the offsets to read from next).
Poll = Callable[[dict[int, int]], tuple[pl.DataFrame, dict[int, int]]]


class TailError(KStreamLabError):
    """An argument of ``tail`` that cannot be used (told before anything is read)."""


@dataclass(frozen=True)
class TailArgs:
    topic: str
    every_s: float
    max_records: int
    max_seconds: float
    show: int


def check_args(topic: object, every: object, max_records: object, max_seconds: object, show: object) -> TailArgs:
    """The arguments of a tail, checked: a TailError naming the argument and what it accepts."""
    if not isinstance(topic, str) or not _TOPIC.match(topic):
        raise TailError(
            f"tail: {topic!r} is not a topic name",
            hint="a topic name is 1-249 characters of letters, digits, '.', '_' and '-'",
        )
    if isinstance(every, bool) or not isinstance(every, str | int | float):
        raise TailError(
            f"tail: every={every!r} is not a duration", hint="use e.g. '1s', '500ms' or seconds as a number"
        )
    if isinstance(every, str):
        try:
            every_s = parse_duration_ms(every) / 1000
        except ValueError as exc:
            raise TailError(f"tail: every={every!r}: {exc}", hint="use e.g. '1s' or '500ms'") from None
    else:
        every_s = float(every)
    if not math.isfinite(every_s) or every_s <= 0:
        raise TailError(f"tail: every={every!r} must be a positive duration", hint="use e.g. '1s'")
    if isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 1:
        raise TailError(f"tail: max_records={max_records!r} must be a positive int", hint="e.g. max_records=1000")
    if (
        isinstance(max_seconds, bool)
        or not isinstance(max_seconds, int | float)
        or not math.isfinite(max_seconds)
        or max_seconds <= 0
    ):
        raise TailError(
            f"tail: max_seconds={max_seconds!r} must be a positive number",
            hint="a notebook cell must end: e.g. max_seconds=30",
        )
    if isinstance(show, bool) or not isinstance(show, int) or show < 0:
        raise TailError(f"tail: show={show!r} must be a non-negative int", hint="e.g. show=20")
    return TailArgs(topic, every_s, max_records, float(max_seconds), show)


@dataclass
class Accumulated:
    """The records a tail took so far, at most ``max_records``, in the order they were read."""

    max_records: int
    frames: list[pl.DataFrame] = field(default_factory=list)
    count: int = 0
    last_rate: float = 0.0

    @property
    def full(self) -> bool:
        return self.count >= self.max_records

    def add(self, frame: pl.DataFrame, seconds: float = 0.0) -> pl.DataFrame:
        """Take ``frame``'s first records up to the cap; return those taken."""
        taken = frame.head(max(0, self.max_records - self.count))
        if taken.height or not self.frames:
            self.frames.append(taken)
        self.count += taken.height
        self.last_rate = taken.height / seconds if seconds > 0 else 0.0
        return taken

    def frame(self) -> pl.DataFrame:
        """All records taken, one frame (columns aligned if a later record brought a new field)."""
        frames = [f for f in self.frames if f.height] or self.frames[:1]
        if not frames:
            return pl.DataFrame()
        same = all(f.schema == frames[0].schema for f in frames)
        return pl.concat(frames, how="vertical" if same else "diagonal_relaxed")


def run_polls(
    poll: Poll,
    positions: dict[int, int],
    args: TailArgs,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[pl.DataFrame]:
    """Poll from ``positions`` every ``args.every_s`` until ``args.max_records`` were yielded or
    ``args.max_seconds`` passed; yield each poll's new records, an empty frame when none came (never
    more than the cap in all)."""
    acc = Accumulated(args.max_records)
    began = clock()
    deadline = began + args.max_seconds
    while True:
        polled_at = clock()
        frame, positions = poll(positions)
        yield acc.add(frame)
        if acc.full:
            return
        wait = min(polled_at + args.every_s, deadline) - clock()
        if wait > 0:
            sleep(wait)
        if clock() >= deadline:
            return


def bounded_poll(settings: Settings, topic: str, decoder: BatchDecoder) -> Poll:
    """A poll through replay's bounded read: ``[position, last stable offset)`` of every partition."""

    def poll(positions: dict[int, int]) -> tuple[pl.DataFrame, dict[int, int]]:
        now_ms = int(time.time() * 1000)
        bounds = snapshot_bounds(settings, topic, sorted(positions))
        parts = {}
        for p, b in bounds.items():
            s = max(positions[p], b.low)  # retention may have removed offsets between two polls
            parts[p] = PartitionRange(p, s, max(s, b.end), b.low, b.end)
        rng = ReplayRange(topic, parts, now_ms)
        frame = read_range(settings, rng, decoder=decoder) if rng.offsets else decoder.empty_frame()
        return frame, {p: r.end for p, r in parts.items()}

    return poll


def iter_tail(
    topic: str,
    start: Position = "latest",
    *,
    every: str | float = "1s",
    max_records: int = 1000,
    max_seconds: float = 30.0,
    partitions: list[int] | None = None,
    value_format: str = "auto",
    errors: str = "skip",
    settings: Settings | None = None,
) -> Iterator[pl.DataFrame]:
    """The new records of each poll as a decoded frame (ordered by partition, then offset), until
    ``max_records`` records or ``max_seconds`` seconds. Arguments as for :func:`tail`."""
    args = check_args(topic, every, max_records, max_seconds, 0)
    for frame in _polls(args, start, partitions, value_format, errors, settings):
        if frame.height:
            yield frame


def _polls(
    args: TailArgs,
    start: Position,
    partitions: list[int] | None,
    value_format: str,
    errors: str,
    settings: Settings | None,
) -> Generator[pl.DataFrame]:
    parse_position(start, now_ms=0)  # a bad start is told before the broker is asked anything
    settings = settings or get_settings()
    rng = resolve_range(settings, args.topic, start, "latest", partitions)
    decoder = BatchDecoder(settings, args.topic, value_format, errors=errors)
    positions = {p: r.start for p, r in rng.partitions.items()}
    yield from run_polls(bounded_poll(settings, args.topic, decoder), positions, args)


def tail(
    topic: str,
    start: Position = "latest",
    *,
    every: str | float = "1s",
    max_records: int = 1000,
    max_seconds: float = 30.0,
    show: int = 10,
    partitions: list[int] | None = None,
    value_format: str = "auto",
    errors: str = "skip",
    display: bool | None = None,
    settings: Settings | None = None,
) -> pl.DataFrame:
    """Follow ``topic`` from ``start`` (default: its end) and return every record read, as one frame.

    Polls every ``every`` ("1s", "250ms" or seconds); stops after ``max_records`` records or
    ``max_seconds`` seconds, or on an interrupt (returning what it has). Columns are replay's (topic,
    partition, offset, timestamp, key, headers, value fields); ``value_format`` and ``errors`` as for
    ``kstream_lab.replay``. ``display`` (default: inside a Jupyter kernel) shows the status, a live
    records/s chart and the newest ``show`` records, updated in place.
    """
    args = check_args(topic, every, max_records, max_seconds, show)
    view = _View(args) if (display if display is not None else _in_kernel()) else None
    acc = Accumulated(max_records)
    began = last = time.monotonic()
    frames = _polls(args, start, partitions, value_format, errors, settings)
    if view is not None:
        view.update(acc, 0.0, running=True)
    try:
        for frame in frames:
            now = time.monotonic()
            acc.add(frame, now - last)
            last = now
            if view is not None:
                view.update(acc, now - began, running=True)
    except KeyboardInterrupt:
        pass
    finally:
        frames.close()
    if view is not None:
        view.update(acc, time.monotonic() - began, running=False)
    return acc.frame()


def status_line(topic: str, acc: Accumulated, elapsed: float, *, running: bool) -> str:
    """``tail orders: 120 records in 4.0s (30.0/s overall, 25.0/s last poll), following``."""
    overall = acc.count / elapsed if elapsed > 0 else 0.0
    state = "following" if running else "stopped"
    return (
        f"tail {topic}: {acc.count} records in {elapsed:.1f}s "
        f"({overall:.1f}/s overall, {acc.last_rate:.1f}/s last poll), {state}"
    )


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


VEGA_LITE = "application/vnd.vegalite.v5+json"


def rate_chart(topic: str, points: list[tuple[float, float]]) -> dict[str, Any]:
    """A display bundle of records/s per poll: a Vega-Lite line chart (JupyterLab renders it; no
    Altair needed to update it in place) and its text form for front-ends without Vega.

    ``points`` are (seconds since the tail began, records/s of the poll that ended then)."""
    values = [{"seconds": round(t, 3), "records_per_s": round(r, 1)} for t, r in points]
    spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": f"{topic}: records/s per poll",
        "width": 480,
        "height": 140,
        "data": {"values": values},
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": {"field": "seconds", "type": "quantitative", "title": "seconds since the tail began"},
            "y": {"field": "records_per_s", "type": "quantitative", "title": "records/s"},
            "tooltip": [{"field": "seconds"}, {"field": "records_per_s"}],
        },
    }
    last = f"{values[-1]['records_per_s']}/s at {values[-1]['seconds']}s" if values else "no poll yet"
    return {VEGA_LITE: spec, "text/plain": f"records/s per poll: {len(values)} polls, last {last}"}


class _View:
    """One output updated in place: a status line, the records/s per poll as a live chart, and the
    newest records (readable)."""

    def __init__(self, args: TailArgs) -> None:
        from IPython.display import display

        self.args, self._display = args, display
        self._status: Any = display(_Text(f"tail {args.topic}: starting"), display_id=True)
        self._points: list[tuple[float, float]] = []
        self._chart: Any = None  # shown with the first poll
        self._table: Any = None  # shown with the first records

    def update(self, acc: Accumulated, elapsed: float, *, running: bool) -> None:
        from kstream_lab.display import readable

        if self._status is None:  # no IPython shell: display() printed instead of giving a handle
            return
        self._status.update(_Text(status_line(self.args.topic, acc, elapsed, running=running)))
        if running and elapsed > 0:
            self._points.append((elapsed, acc.last_rate))
            bundle = rate_chart(self.args.topic, self._points)
            if self._chart is None:
                self._chart = self._display(bundle, raw=True, display_id=True)
            else:
                self._chart.update(bundle, raw=True)
        if not (self.args.show and acc.count):
            return
        newest = readable(acc.frame().tail(self.args.show))
        if self._table is None:
            self._table = self._display(newest, display_id=True)
        else:
            self._table.update(newest)


class _Text:
    """Plain text for a display handle (IPython's own ``Pretty`` would need an import per update)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text
