"""Bounded range reads: resolve ``start``/``end`` to offsets, then fetch and decode in parallel.

Range rules (docs/semantics.md §6), per partition:

* ``start`` is inclusive, ``end`` exclusive, both resolved to offsets before anything is read.
* Offsets (an int for every partition, or a ``{partition: offset}`` dict) are used as given, clamped
  to what exists: a start below the first retained offset (retention deleted it) starts at that
  offset and logs a warning; an end past the snapshot stops at the snapshot.
* Times (``datetime``, ISO-8601 text, ``"@<epoch ms>"``, ``"15m ago"``) resolve through the broker's
  time index to the first offset whose record timestamp is >= the time. So a record stamped exactly
  ``start`` is included and one stamped exactly ``end`` is excluded. The range stays an *offset*
  range: records inside it with out-of-order timestamps are kept, which is what a back-test needs.
* ``"earliest"`` is the first retained offset, ``"latest"`` the end snapshot.
* The end snapshot is taken once, at call time, as the last stable offset (read_committed), so the
  read neither waits for open transactions nor grows while producers keep writing.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from kstream_lab.durations import parse_duration_ms
from kstream_lab.errors import KStreamLabError
from kstream_lab.kafka.admin import offsets_for_times
from kstream_lab.kafka.read import Extract, PartitionBounds, read_batches, snapshot_bounds
from kstream_lab.lineage import RangeRead, record_reads
from kstream_lab.replay.decode import BatchDecoder, SchemaArg
from kstream_lab.settings import Settings, get_settings

log = logging.getLogger(__name__)

Position = int | str | datetime | Mapping[int, int] | None
# What a parsed position carries: None, an offset or a time in ms, or {partition: offset}.
PositionValue = int | dict[int, int] | None
_AGO = re.compile(r"^\s*(.+?)\s+ago\s*$", re.IGNORECASE)


class RangeError(KStreamLabError):
    """A start/end that cannot be understood or resolved."""


@dataclass(frozen=True)
class PartitionRange:
    partition: int
    start: int
    end: int
    low: int
    snapshot_end: int

    @property
    def offsets(self) -> int:
        """Offsets in [start, end): an upper bound on records (markers and aborted records use offsets)."""
        return max(0, self.end - self.start)


@dataclass(frozen=True)
class ReplayRange:
    """A topic range resolved to offsets at ``snapshot_ms``."""

    topic: str
    partitions: dict[int, PartitionRange]
    snapshot_ms: int

    @property
    def offsets(self) -> int:
        return sum(r.offsets for r in self.partitions.values())

    def as_offsets(self) -> dict[int, tuple[int, int]]:
        return {p: (r.start, r.end) for p, r in self.partitions.items()}

    def describe(self) -> str:
        parts = ", ".join(f"p{p}=[{r.start},{r.end})" for p, r in sorted(self.partitions.items()))
        return f"{self.topic} {parts} ({self.offsets} offsets)"


def parse_position(value: Position, *, now_ms: int) -> tuple[str, PositionValue]:
    """Classify a start/end: ("earliest"|"latest", None), ("offset", int), ("offsets", dict), ("time", ms)."""
    if value is None:
        return ("none", None)
    if isinstance(value, bool):
        raise RangeError(f"not a position: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise RangeError(f"offset must not be negative: {value}")
        return ("offset", value)
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return ("time", int(aware.timestamp() * 1000))
    if isinstance(value, Mapping):
        bad = {p: o for p, o in value.items() if not isinstance(o, int) or isinstance(o, bool) or o < 0}
        if bad:
            raise RangeError(f"per-partition offsets must be non-negative ints, got {bad}")
        return ("offsets", {int(p): int(o) for p, o in value.items()})
    if not isinstance(value, str):
        raise RangeError(
            f"not a position: {value!r}",
            hint="use an offset, a {partition: offset} dict, a datetime, '@<epoch ms>', "
            "'15m ago', 'earliest' or 'latest'",
        )
    return _parse_text(value.strip(), now_ms)


def _parse_text(text: str, now_ms: int) -> tuple[str, PositionValue]:
    low = text.lower()
    if low in ("earliest", "beginning"):
        return ("earliest", None)
    if low in ("latest", "end"):
        return ("latest", None)
    if low == "now":
        return ("time", now_ms)
    if text.isdigit():
        return ("offset", int(text))
    if text.startswith("@") and text[1:].isdigit():
        return ("time", int(text[1:]))
    m = _AGO.match(text)
    if m:
        try:
            return ("time", now_ms - parse_duration_ms(m.group(1)))
        except ValueError as exc:
            raise RangeError(str(exc)) from None
    try:
        return parse_position(datetime.fromisoformat(text), now_ms=now_ms)
    except ValueError:
        raise RangeError(
            f"not a position: {text!r}",
            hint="use an offset, '@<epoch ms>', an ISO time, '15m ago', 'earliest' or 'latest'",
        ) from None


def resolve_range(
    settings: Settings,
    topic: str,
    start: Position = "earliest",
    end: Position = "latest",
    partitions: list[int] | None = None,
    *,
    now_ms: int | None = None,
) -> ReplayRange:
    """Snapshot the topic's ends and turn ``start``/``end`` into offsets per partition."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    s_kind, s_val = parse_position(start, now_ms=now_ms)
    e_kind, e_val = parse_position(end, now_ms=now_ms)
    if partitions is None and isinstance(s_val, dict):  # kind "offsets"
        partitions = sorted(s_val)
    bounds = snapshot_bounds(settings, topic, partitions)
    starts = _resolve(settings, topic, bounds, s_kind, s_val, default="earliest")
    ends = _resolve(settings, topic, bounds, e_kind, e_val, default="latest")
    out = {}
    for p, b in bounds.items():
        s, e = starts[p], min(ends[p], b.end)
        if s < b.low:
            log.warning(
                "%s[%d]: offsets %d..%d were deleted by retention; starting at %d", topic, p, s, b.low - 1, b.low
            )
            s = b.low
        out[p] = PartitionRange(p, s, max(s, e) if s <= b.end else s, b.low, b.end)
    return ReplayRange(topic, out, now_ms)


def _resolve(
    settings: Settings,
    topic: str,
    bounds: dict[int, PartitionBounds],
    kind: str,
    value: PositionValue,
    *,
    default: str,
) -> dict[int, int]:
    if kind == "none":
        kind = default
    if kind == "earliest":
        return {p: b.low for p, b in bounds.items()}
    if kind == "latest":
        return {p: b.end for p, b in bounds.items()}
    if isinstance(value, dict):  # kind "offsets"
        fallback = {p: (b.low if default == "earliest" else b.end) for p, b in bounds.items()}
        return {p: value.get(p, fallback[p]) for p in bounds}
    assert value is not None, kind  # only "none", "earliest" and "latest" carry none
    if kind == "offset":
        return {p: value for p in bounds}
    found = offsets_for_times(settings, topic, {p: value for p in bounds})
    return {p: (bounds[p].end if found[p] < 0 else min(found[p], bounds[p].end)) for p in bounds}


_DONE = object()
# Records per fetch batch (each of one partition) handed to the decoder. Big enough for bulk decoding
# to pay off, small enough that one partial batch per partition plus the queue stay a few MB.
BATCH_RECORDS = 20_000


def iter_frames(
    settings: Settings,
    rng: ReplayRange,
    *,
    value_format: str = "auto",
    errors: str = "skip",
    batch_size: int = BATCH_RECORDS,
    stall_timeout: float = 30.0,
    decoder: BatchDecoder | None = None,
    extract: Extract | None = None,
) -> Iterator[pl.DataFrame]:
    """Decoded frames of the range, one per fetch batch (one partition each, in offset order).

    A background thread fetches (librdkafka + column extraction) while this thread decodes (Polars
    releases the GIL); a small bounded queue between them keeps memory at a few batches.
    """
    decoder = decoder or BatchDecoder(settings, rng.topic, value_format, errors=errors)
    q: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def pump() -> None:
        try:
            for raw in read_batches(
                settings,
                rng.topic,
                rng.as_offsets(),
                batch_size=batch_size,
                stall_timeout=stall_timeout,
                stop=stop,
                extract=extract,
            ):
                while not stop.is_set():
                    try:
                        q.put(raw, timeout=0.2)
                        break
                    except queue.Full:
                        continue
            q.put(_DONE)
        except BaseException as exc:  # handed to the reading thread, which raises it
            q.put(exc)

    thread = threading.Thread(target=pump, name=f"replay-fetch-{rng.topic}", daemon=True)
    thread.start()
    counts: Counter = Counter()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            frame = decoder.decode(item)
            if frame.height:  # a fetch batch holds one partition
                counts[frame[decoder.meta_name("partition")][0]] += frame.height
            yield frame
        record_reads(
            settings,
            [
                RangeRead(rng.topic, p, start, end, counts.get(p, 0), sorted(decoder.schema_ids))
                for p, (start, end) in sorted(rng.as_offsets().items())
            ],
        )
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)
        decoder.report()


def read_range(
    settings: Settings,
    rng: ReplayRange,
    *,
    value_format: str = "auto",
    errors: str = "skip",
    batch_size: int = BATCH_RECORDS,
    columns: list[str] | None = None,
    schema: SchemaArg = None,
    decoder: BatchDecoder | None = None,
) -> pl.DataFrame:
    """The whole range as one DataFrame, ordered by partition, then offset; only ``columns`` if given
    (projected batch by batch, so memory holds just those). ``decoder``: one the caller wants to ask
    afterwards (which format it detected, which schema ids it met); built here otherwise.

    Fetch batches hold one partition each, in offset order, so the frames are concatenated in
    partition order without a copy (the result stays chunked): the peak is about one frame plus the
    batches in flight.
    """
    decoder = decoder or BatchDecoder(settings, rng.topic, value_format, errors=errors, schema=schema)
    extract = None if columns is None else _extract_for(columns)
    pieces: dict[int, list[pl.DataFrame]] = {}
    seen: set[str] = set()  # every column a batch had (JSON fields may first appear in a later batch)
    for frame in iter_frames(settings, rng, batch_size=batch_size, decoder=decoder, extract=extract):
        if (
            extract is not None
            and columns is not None
            and extract.timestamps
            and decoder.meta_name("timestamp") not in columns
        ):
            extract.timestamps = False  # "timestamp" named the value's field, not the record's
        if frame.height:
            p = frame[decoder.meta_name("partition")][0]
            seen.update(frame.columns)
            if columns is not None:
                frame = frame.select([c for c in columns if c in frame.columns])
            pieces.setdefault(p, []).append(frame)
    ordered = [f for p in sorted(pieces) for f in pieces[p]]
    if not ordered:
        empty = decoder.empty_frame()
        return empty if columns is None else empty.select([c for c in columns if c in empty.columns])
    if columns is not None and (missing := [c for c in columns if c not in seen]):
        raise RangeError(f"{rng.topic} has no column(s) {missing}", hint=f"its columns are {sorted(seen)}")
    same = all(f.schema == ordered[0].schema for f in ordered)  # the usual case: no work to align columns
    frame = pl.concat(ordered, how="vertical" if same else "diagonal_relaxed", rechunk=False)
    return frame if columns is None else frame.select(columns)


def _extract_for(columns: list[str]) -> Extract:
    """The metadata a projected read needs. Before the first batch is decoded "timestamp" may name
    the record's timestamp or a value field of that name (then the record's is "kafka_timestamp"),
    so it is extracted until the decoder knows."""
    wanted = set(columns)
    return Extract(
        keys=bool(wanted & {"key", "kafka_key"}),
        headers=bool(wanted & {"headers", "kafka_headers"}),
        timestamps=bool(wanted & {"timestamp", "kafka_timestamp"}),
    )


def replay(
    topic: str,
    start: Position = "earliest",
    end: Position = "latest",
    partitions: list[int] | None = None,
    value_format: str = "auto",
    settings: Settings | None = None,
    *,
    errors: str = "skip",
    batch_size: int = BATCH_RECORDS,
    columns: list[str] | None = None,
    schema: dict | pl.Schema | None = None,
    cache: bool | None = None,
) -> pl.DataFrame:
    """Read ``[start, end)`` of a topic (read_committed, bounded) into one DataFrame.

    Rows are ordered by partition, then offset. Columns: topic, partition, offset, timestamp, key,
    headers, then the decoded value fields (``value`` bytes for raw); ``columns`` keeps only those
    named, batch by batch, so a long range of a few fields fits in a fraction of the memory.
    ``value_format``: auto, json, avro, json_schema, protobuf or raw. ``errors``: "skip" drops
    undecodable values (logged), "raise" stops at the first. ``schema`` (JSON only; field -> Polars
    dtype) fixes the value columns instead of inferring them from samples: fields it does not name
    are dropped, fields it names but a record lacks read null. Pass it for fields too rare for the samples to see.
    ``cache``: keep the decoded range and serve it again exactly (kstream_lab/replay/cache.py; unset:
    the ``replay_cache`` setting, on in notebooks); projected reads (``columns``) bypass it.
    """
    settings = settings or get_settings()
    from kstream_lab.replay.cache import cache_wanted, replay_cached

    if columns is None and (cache if cache is not None else cache_wanted(settings)):
        return replay_cached(
            settings,
            topic,
            start,
            end,
            partitions,
            value_format=value_format,
            errors=errors,
            batch_size=batch_size,
            schema=schema,
        )
    rng = resolve_range(settings, topic, start, end, partitions)
    return read_range(
        settings, rng, value_format=value_format, errors=errors, batch_size=batch_size, columns=columns, schema=schema
    )
