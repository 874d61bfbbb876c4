"""The exact replay cache: decoded ranges kept as Arrow IPC files, mapped back row for row.

Kafka offsets are immutable: the records of ``[start, end)`` of a partition never change while the
topic lives (retention only removes whole prefixes). So a decoded range, once read, can be kept and
served again exactly, and a later overlapping read fetches only what is not kept. What could make a
kept range wrong, and how each is ruled out:

* another cluster or a topic deleted and re-created (offsets restart): the cluster id and the topic
  id are in the key, so such a topic has its own entry and never meets the old one's segments;
* retention: a segment's part below the low watermark is never served (the range a read resolves to
  starts at the low watermark), and segments wholly below it are dropped;
* a writer schema id that now names another schema (a registry reset): each segment keeps the
  fingerprints of the schemas its records were written with, checked before it is served;
* compaction, which removes superseded records anywhere below the active segment, at any time: a
  compacted topic's kept range could hold records a fresh read no longer returns, so compacted
  topics are never cached;
* decoding options (value format, error policy, a fixed JSON schema): in the key. JSON without a
  fixed ``schema=`` infers its columns from the batches a read happens to see, so a fresh read and a
  cached one could type a field differently: it is not cached either (pass ``schema=`` to cache it).

Layout: ``data_dir/replay-cache/<key hash>/`` holds ``key.json``, ``segments.json`` (partition,
start, end, rows, bytes, schema fingerprints, last use) and one uncompressed Arrow IPC file per
segment (memory-mapped when read: no decode, no copy; ~2.3x the bytes of lz4 Parquet). A lock file
serialises processes sharing the cache; the size cap evicts least recently used segments.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import logging
import os
import queue
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from kstream_lab.errors import AuthorizationError, KStreamLabError, TopicError
from kstream_lab.kafka.admin import TopicIdentity, topic_identity
from kstream_lab.kafka.schema_registry import RegistryError, current_schema
from kstream_lab.lineage import RangeRead, record_reads
from kstream_lab.replay.decode import BatchDecoder
from kstream_lab.replay.reader import PartitionRange, Position, ReplayRange, SchemaArg, read_range, resolve_range
from kstream_lab.settings import Settings

log = logging.getLogger(__name__)
CACHE_FORMAT = 2  # 1: Parquet segments; 2: Arrow IPC, memory-mapped


@dataclass
class Segment:
    partition: int
    start: int
    end: int
    rows: int
    file: str
    bytes: int
    schemas: dict[str, str] = field(default_factory=dict)  # writer schema id -> sha256 of its text
    used: float = 0.0


@dataclass(frozen=True)
class Step:
    """One piece of a partition's range: served from ``segment`` or fetched (segment None)."""

    start: int
    end: int
    segment: Segment | None = None


def plan(segments: list[Segment], start: int, end: int) -> list[Step]:
    """Cover ``[start, end)`` with kept segments where they reach and fetches for the holes, in
    offset order. Overlapping segments (two processes filled the same hole) are fine: the first
    that covers an offset serves it."""
    steps: list[Step] = []
    pos = start
    for seg in sorted(segments, key=lambda s: (s.start, -s.end)):
        if pos >= end:
            break
        if seg.end <= pos or seg.start >= end:
            continue
        if seg.start > pos:
            steps.append(Step(pos, seg.start))
            pos = seg.start
        upto = min(seg.end, end)
        steps.append(Step(pos, upto, seg))
        pos = upto
    if pos < end:
        steps.append(Step(pos, end))
    return steps


def cache_root(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "replay-cache"


class CacheEntry:
    """The kept segments of one topic under one key (cluster, topic id, decoding options)."""

    def __init__(self, settings: Settings, key: dict) -> None:
        self.settings, self.key = settings, key
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        self.dir = cache_root(settings) / digest
        self.segments: dict[int, list[Segment]] = {}

    @contextmanager
    def locked(self) -> Iterator[CacheEntry]:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "key.json").write_text(json.dumps(self.key, sort_keys=True, indent=1))
        with (self.dir / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self.segments = _load(self.dir)
                yield self
                _save(self.dir, self.segments)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def drop(self, seg: Segment, why: str) -> None:
        log.info("replay cache: dropping %s[%d] %d..%d (%s)", self.key["topic"], seg.partition, seg.start, seg.end, why)
        self.segments[seg.partition].remove(seg)
        (self.dir / seg.file).unlink(missing_ok=True)

    def kept(self, partition: int) -> list[Segment]:
        """The partition's segments: those on disk and those this process is still writing."""
        with _lock:
            pending = [seg for d, seg, _f in _pending if d == self.dir and seg.partition == partition]
        return self.segments.get(partition, []) + pending

    def read(self, seg: Segment, start: int, end: int) -> pl.DataFrame:
        seg.used = time.time()
        frame = _recall(self.dir, seg.file)
        if frame is None:
            frame = _map_segment(self.dir / seg.file)
            _remember(self.settings, self.dir, seg.file, frame, seg.bytes or None)
        if (start, end) == (seg.start, seg.end):
            return frame
        off = "kafka_offset" if "kafka_offset" in frame.columns else "offset"
        return frame.filter(pl.col(off).is_between(start, end - 1))

    def add(self, partition: int, start: int, end: int, frame: pl.DataFrame, schemas: dict[str, str]) -> None:
        """Keep a fetched piece: in memory at once, on disk by the background writer (the read that
        fetched it does not wait for the file; :func:`flush` does)."""
        name = f"p{partition}-{start}-{end}-{uuid.uuid4().hex[:6]}.arrow"
        seg = Segment(partition, start, end, frame.height, name, 0, schemas, time.time())
        _remember(self.settings, self.dir, name, frame)
        with _lock:
            _pending.append((self.dir, seg, frame))
        _writer().put((self.settings, self.dir, seg, frame))


# ---- the in-process tier and the background writer ----------------------------------------------
# A notebook re-runs a cell in the same kernel: frames kept in memory (up to replay_cache_memory_bytes)
# are served without touching the files at all; Polars frames are immutable, so handing out the same
# one is safe. Disk segments outlive the kernel.
_lock = threading.Lock()
_memory: OrderedDict[tuple[Path, str], pl.DataFrame] = OrderedDict()
_sizes: dict[tuple[Path, str], int] = {}  # bytes counted for each kept frame
_memory_bytes = [0]
_pending: list[tuple[Path, Segment, pl.DataFrame]] = []  # handed to the writer, not yet on disk
_queue: queue.Queue | None = None


def _remember(settings: Settings, directory: Path, name: str, frame: pl.DataFrame, size: int | None = None) -> None:
    """Keep ``frame``, counted as ``size`` bytes (a mapped segment: its file's size, which is what
    it maps; else Polars' estimate, which walks every buffer)."""
    size = int(frame.estimated_size()) if size is None else size
    with _lock:
        if (directory, name) in _memory or size > settings.replay_cache_memory_bytes:
            return
        _memory[(directory, name)] = frame
        _sizes[(directory, name)] = size
        _memory_bytes[0] += size
        while _memory_bytes[0] > settings.replay_cache_memory_bytes and _memory:
            old, _frame = _memory.popitem(last=False)
            _memory_bytes[0] -= _sizes.pop(old)


def _recall(directory: Path, name: str) -> pl.DataFrame | None:
    with _lock:
        frame = _memory.get((directory, name))
        if frame is not None:
            _memory.move_to_end((directory, name))
        if frame is None:  # pinned while the writer has it
            frame = next((f for d, seg, f in _pending if d == directory and seg.file == name), None)
        return frame


def forget_memory() -> None:
    """Empty the in-process tier (benchmarks: the disk tier alone)."""
    with _lock:
        _memory.clear()
        _sizes.clear()
        _memory_bytes[0] = 0


def _writer() -> queue.Queue:
    global _queue
    with _lock:
        if _queue is None:
            _queue = queue.Queue()
            threading.Thread(target=_write_loop, args=(_queue,), name="replay-cache-writer", daemon=True).start()
            atexit.register(flush)
        return _queue


def _write_loop(jobs: queue.Queue) -> None:
    while True:
        settings, directory, seg, frame = jobs.get()
        try:
            _persist(directory, seg, frame)
            enforce_cap(settings)
        except Exception:  # a full disk must not break the read that already returned
            log.exception("replay cache: could not keep %s", seg.file)
        finally:
            with _lock:
                _pending[:] = [job for job in _pending if job[1] is not seg]
            jobs.task_done()


def _map_segment(path: Path) -> pl.DataFrame:
    """A kept segment, memory-mapped: the Arrow IPC file's buffers become the frame's without a copy
    or a decode (a new kernel's re-read of 1M orders maps in ~10 ms where decoding Parquet took
    ~150 ms). Pages come from the page cache as they are touched; the file is replaced, never
    rewritten in place (see :func:`_persist`), and an evicted file stays readable while mapped."""
    with pa.memory_map(str(path)) as source:  # closing it keeps the mapping the buffers hold
        table = ipc.open_file(source).read_all()
    frame = pl.from_arrow(table, rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _persist(directory: Path, seg: Segment, frame: pl.DataFrame) -> None:
    tmp = directory / f".{seg.file}.tmp"
    frame.write_ipc(tmp, compression="uncompressed")  # mappable as is: see _map_segment
    with (directory / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            os.replace(tmp, directory / seg.file)
            seg.bytes = (directory / seg.file).stat().st_size
            segments = _load(directory)
            segments.setdefault(seg.partition, []).append(seg)
            _save(directory, segments)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def flush() -> None:
    """Wait until every kept piece is on disk (at exit, and before listing or measuring)."""
    if _queue is not None:
        _queue.join()


def _load(directory: Path) -> dict[int, list[Segment]]:
    path = directory / "segments.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    if data.get("format") != CACHE_FORMAT:
        return {}
    out: dict[int, list[Segment]] = {}
    for raw in data["segments"]:
        seg = Segment(**raw)
        if (directory / seg.file).exists():
            out.setdefault(seg.partition, []).append(seg)
    return out


def _save(directory: Path, segments: dict[int, list[Segment]]) -> None:
    rows = [asdict(s) for p in sorted(segments) for s in segments[p]]
    tmp = directory / ".segments.json.tmp"
    tmp.write_text(json.dumps({"format": CACHE_FORMAT, "segments": rows}))
    os.replace(tmp, directory / "segments.json")


# ---- listing, clearing and the size cap ---------------------------------------------------------
@dataclass(frozen=True)
class EntrySummary:
    topic: str
    key: dict
    segments: int
    rows: int
    bytes: int
    last_used: float
    directory: Path


def entries(settings: Settings) -> list[EntrySummary]:
    """Every kept entry, once this process's pending writes are on disk."""
    flush()
    return _entries(settings)


def _entries(settings: Settings) -> list[EntrySummary]:
    root = cache_root(settings)
    out = []
    for d in sorted(root.iterdir()) if root.exists() else []:
        if not (d / "key.json").exists():
            continue
        key = json.loads((d / "key.json").read_text())
        segs = [s for group in _load(d).values() for s in group]
        out.append(
            EntrySummary(
                key["topic"],
                key,
                len(segs),
                sum(s.rows for s in segs),
                sum(s.bytes for s in segs),
                max((s.used for s in segs), default=0.0),
                d,
            )
        )
    return out


def clear(settings: Settings, topic: str | None = None) -> int:
    """Remove every entry (of ``topic`` only, if given); returns how many."""
    gone = [e for e in entries(settings) if topic is None or e.topic == topic]
    for e in gone:
        shutil.rmtree(e.directory, ignore_errors=True)
    with _lock:
        for k in [k for k in _memory if any(k[0] == e.directory for e in gone)]:
            _memory.pop(k)
            _memory_bytes[0] -= _sizes.pop(k)
    return len(gone)


def _drop_old_formats(root: Path) -> None:
    """Entries an earlier version kept in another layout (CACHE_FORMAT) are never served: remove them."""
    for d in sorted(root.iterdir()) if root.exists() else []:
        try:
            old = json.loads((d / "key.json").read_text()).get("format", CACHE_FORMAT) != CACHE_FORMAT
        except (OSError, ValueError):
            continue
        if old:
            log.info("replay cache: removing %s (kept by an earlier version in another layout)", d.name)
            shutil.rmtree(d, ignore_errors=True)


def enforce_cap(settings: Settings) -> int:
    """Evict least recently used segments until the cache fits ``replay_cache_max_bytes``; returns
    the bytes freed. Each entry is edited under its own lock."""
    _drop_old_formats(cache_root(settings))
    cap = settings.replay_cache_max_bytes
    listed = _entries(settings)  # not entries(): the writer thread calls this, flush() would wait for it
    excess = sum(e.bytes for e in listed) - cap
    if excess <= 0:
        return 0
    candidates = sorted(
        (s.used, e.directory, s.file, s.bytes) for e in listed for group in _load(e.directory).values() for s in group
    )
    doomed: dict[Path, set[str]] = {}
    freed = 0
    for _used, directory, name, size in candidates:
        if freed >= excess:
            break
        doomed.setdefault(directory, set()).add(name)
        freed += size
    for directory, names in doomed.items():
        with (directory / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            segs = _load(directory)
            _save(directory, {p: [s for s in group if s.file not in names] for p, group in segs.items()})
            for name in names:
                (directory / name).unlink(missing_ok=True)
            fcntl.flock(lock, fcntl.LOCK_UN)
    return freed


# ---- the cached read ------------------------------------------------------------------------------
def cache_wanted(settings: Settings) -> bool:
    """``replay_cache`` when set; unset: on inside a Jupyter kernel (a notebook), off elsewhere."""
    if settings.replay_cache is not None:
        return settings.replay_cache
    import sys

    return "ipykernel" in sys.modules


def read_cached(
    settings: Settings,
    rng: ReplayRange,
    *,
    value_format: str,
    errors: str,
    batch_size: int,
    schema: SchemaArg,
    identity: TopicIdentity | KStreamLabError | None = None,
) -> pl.DataFrame:
    """``read_range`` through the cache: kept segments served, holes fetched and kept (see module doc).
    ``identity``: the topic's, when the caller asked for it already (:func:`replay_cached`)."""
    key = _key(settings, rng.topic, value_format, errors, schema, identity or _identify(settings, rng.topic))
    if key is None or (value_format == "json" and schema is None):
        return read_range(settings, rng, value_format=value_format, errors=errors, batch_size=batch_size, schema=schema)
    entry = CacheEntry(settings, key)
    with entry.locked():
        return _serve(entry, rng, value_format=value_format, errors=errors, batch_size=batch_size, schema=schema)


_UNIDENTIFIED: set[str] = set()  # topics already warned about, once per process


def replay_cached(
    settings: Settings,
    topic: str,
    start: Position,
    end: Position,
    partitions: list[int] | None,
    **read: Any,
) -> pl.DataFrame:
    """Resolve the range and identify the topic at once -- two round trips to the cluster side by
    side, not one after the other (a hit is otherwise bound by them) -- then :func:`read_cached`."""
    with ThreadPoolExecutor(1, thread_name_prefix="kstream-cache-identity") as pool:
        identity = pool.submit(_identify, settings, topic)
        rng = resolve_range(settings, topic, start, end, partitions)
        found = identity.result()
    return read_cached(settings, rng, identity=found, **read)


def _identify(settings: Settings, topic: str) -> TopicIdentity | KStreamLabError:
    """The topic's identity, or why it cannot be had (e.g. no DESCRIBE_CONFIGS: the read may still be allowed)."""
    try:
        return topic_identity(settings, topic)
    except (TopicError, AuthorizationError) as exc:
        return exc


def _key(
    settings: Settings,
    topic: str,
    value_format: str,
    errors: str,
    schema: SchemaArg,
    ident: TopicIdentity | KStreamLabError,
) -> dict | None:
    if isinstance(ident, KStreamLabError):
        if topic not in _UNIDENTIFIED:
            log.warning("replay cache: %s is read without the cache: %s", topic, ident)
            _UNIDENTIFIED.add(topic)
        return None
    if "compact" in ident.cleanup_policy:
        log.info("replay cache: %s is compacted (records can vanish from any closed segment): not cached", topic)
        return None
    fixed = None if schema is None else {k: str(v) for k, v in dict(schema).items()}
    return {
        "format": CACHE_FORMAT,
        "cluster_id": ident.cluster_id,
        "topic": topic,
        "topic_id": ident.topic_id,
        "value_format": value_format,
        "errors": errors,
        "schema": fixed,
    }


def _serve(entry: CacheEntry, rng: ReplayRange, **read: Any) -> pl.DataFrame:
    settings = entry.settings
    unchanged = _SchemaCheck(settings)
    steps: dict[int, list[Step]] = {}
    for p, r in sorted(rng.partitions.items()):
        for seg in list(entry.segments.get(p, [])):
            if seg.end <= r.low:
                entry.drop(seg, "below the low watermark")
            elif not unchanged(seg):
                entry.drop(seg, "a writer schema id now names another schema")
        steps[p] = plan(entry.kept(p), r.start, r.end)
    fetched = _fetch_holes(entry, rng, steps, read)
    pieces: list[pl.DataFrame] = []
    cached_reads: list[RangeRead] = []
    for p, plan_p in steps.items():
        for step in plan_p:
            if step.segment is None:
                piece = fetched[(p, step.start)]
            else:
                piece = entry.read(step.segment, step.start, step.end)
                ids = sorted(int(i) for i in step.segment.schemas)
                cached_reads.append(RangeRead(rng.topic, p, step.start, step.end, piece.height, ids, "cache"))
            if piece.height:
                pieces.append(piece)
    record_reads(settings, cached_reads)
    if not pieces:
        return read_range(settings, _sub(rng, {}), **read)  # the empty frame, with the columns it knows
    same = all(f.schema == pieces[0].schema for f in pieces)
    return pl.concat(pieces, how="vertical" if same else "diagonal_relaxed", rechunk=False)


def _fetch_holes(
    entry: CacheEntry, rng: ReplayRange, steps: dict[int, list[Step]], read: dict[str, Any]
) -> dict[tuple[int, int], pl.DataFrame]:
    """Fetch every hole, one bounded read per round (the i-th hole of each partition), keep each."""
    holes = {p: [s for s in plan_p if s.segment is None and s.end > s.start] for p, plan_p in steps.items()}
    out: dict[tuple[int, int], pl.DataFrame] = {}
    rounds = max((len(h) for h in holes.values()), default=0)
    for i in range(rounds):
        wanted = {p: h[i] for p, h in holes.items() if len(h) > i}
        decoder = BatchDecoder(
            entry.settings, rng.topic, read["value_format"], errors=read["errors"], schema=read["schema"]
        )
        frame = read_range(
            entry.settings, _sub(rng, {p: (s.start, s.end) for p, s in wanted.items()}), decoder=decoder, **read
        )
        part = decoder.meta_name("partition")
        keep = decoder.format != "json" or decoder.fixed_schema  # auto-detected JSON: see the module doc
        schemas = _fingerprints(entry.settings, decoder.schema_ids) if keep else {}
        column = frame[part]  # read_range orders by partition: each partition's rows are one slice
        for p, step in wanted.items():
            first = int(column.search_sorted(p, "left"))
            piece = frame.slice(first, int(column.search_sorted(p, "right")) - first)
            out[(p, step.start)] = piece
            if keep:
                entry.add(p, step.start, step.end, piece, schemas)
    return out


def _sub(rng: ReplayRange, ranges: dict[int, tuple[int, int]]) -> ReplayRange:
    whole = rng.partitions
    parts = {p: PartitionRange(p, s, e, whole[p].low, whole[p].snapshot_end) for p, (s, e) in sorted(ranges.items())}
    return ReplayRange(rng.topic, parts, rng.snapshot_ms)


def _fingerprints(settings: Settings, ids: set[int]) -> dict[str, str]:
    return {str(i): _fingerprint(settings, i) for i in sorted(ids)}


def _fingerprint(settings: Settings, schema_id: int) -> str:
    """sha256 of the schema text (Protobuf and JSON Schema: with their type and references, which
    change what the text means); "absent" for an id the registry does not know (a poison record's
    made-up id: if the id is ever assigned, the segment's undecodable records might now decode).
    Asked of the registry now, over the process's kept connection (no client cache in between)."""
    try:
        found = current_schema(settings, schema_id)
        text = found.schema
        if found.schema_type != "AVRO" or found.references:
            text = json.dumps([found.schema_type, text, [list(r) for r in found.references]], default=str)
        return hashlib.sha256(text.encode()).hexdigest()
    except RegistryError as exc:
        if exc.status == 404:
            return "absent"
        raise


class _SchemaCheck:
    """Whether a segment's writer schemas are still what they were; one registry client per read, each
    id asked once (a read checks every segment it serves)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.known: dict[str, str] = {}

    def __call__(self, seg: Segment) -> bool:
        missing = {int(i) for i in seg.schemas if i not in self.known}
        if missing:
            self.known.update(_fingerprints(self.settings, missing))
        return all(self.known[i] == fp for i, fp in seg.schemas.items())
