"""Larger-than-memory replay: a topic range written as partitioned Parquet, chunk by chunk.

Layout: ``<out>/partition-<p>/part-<first offset, 20 digits>.parquet`` (``chunk_rows`` rows each, a
partition's last file shorter) plus ``_range.json`` (the resolved range, format, counts). File names
sort in offset order, so a lazy scan of ``<out>/**/*.parquet`` sees each partition's records in
order. Memory stays at a few fetch batches plus under ``chunk_rows`` buffered rows per partition
(all flushed early when the total buffered passes ``2 * chunk_rows``). Files are written to a
temporary name and renamed, so a reader never sees half a file; a rerun into the same directory
replaces the previous export.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from tqdm import tqdm

from kstream_lab.replay.decode import BatchDecoder, SchemaArg
from kstream_lab.replay.reader import BATCH_RECORDS, ReplayRange, iter_frames
from kstream_lab.settings import Settings

RANGE_FILE = "_range.json"


@dataclass(frozen=True)
class ExportSummary:
    out: Path
    records: int
    files: int
    skipped: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (
            f"wrote {self.records:,} records in {self.files} file(s) to {self.out} in {self.seconds:.1f}s "
            f"({self.rate:,.0f} rec/s)" + (f"; skipped {self.skipped} undecodable" if self.skipped else "")
        )


def export_parquet(
    settings: Settings,
    rng: ReplayRange,
    out: str | Path,
    *,
    value_format: str = "auto",
    errors: str = "skip",
    chunk_rows: int = 500_000,
    batch_size: int = BATCH_RECORDS,
    progress: bool = True,
    schema: SchemaArg = None,
) -> ExportSummary:
    """Stream the range into partitioned Parquet files with bounded memory and a progress bar."""
    out = Path(out)
    if out.exists():
        for old in out.glob("partition-*"):
            shutil.rmtree(old)
        (out / RANGE_FILE).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    decoder = BatchDecoder(settings, rng.topic, value_format, errors=errors, schema=schema)
    writer = _ChunkWriter(out, chunk_rows, decoder)
    t0 = time.monotonic()
    with tqdm(
        total=rng.offsets, unit="rec", unit_scale=True, desc=f"replay {rng.topic}", disable=not progress or None
    ) as bar:
        for frame in iter_frames(settings, rng, batch_size=batch_size, decoder=decoder):
            writer.add(frame)
            bar.update(frame.height)
        writer.flush_all()
        bar.update(max(0, rng.offsets - bar.n))  # offsets used by markers and skipped records
    summary = ExportSummary(out, writer.records, writer.files, decoder.bad, time.monotonic() - t0)
    manifest = {
        "topic": rng.topic,
        "snapshot_ms": rng.snapshot_ms,
        "value_format": decoder.format,
        "records": summary.records,
        "skipped": decoder.bad,
        "partitions": {str(p): {"start": r.start, "end": r.end} for p, r in rng.partitions.items()},
    }
    (out / RANGE_FILE).write_text(json.dumps(manifest, indent=2))
    return summary


def scan_export(out: str | Path) -> pl.LazyFrame:
    """A lazy scan over an export (partition directories in offset order).

    Files written before a JSON field first appeared lack its column: the scan uses the union of
    the files' schemas and reads missing columns as nulls.
    """
    files = sorted(Path(out).glob("partition-*/part-*.parquet"))
    if not files:
        raise FileNotFoundError(f"no Parquet files under {out}")
    schemas = [pl.read_parquet_schema(f) for f in files]
    if all(sch == schemas[0] for sch in schemas):
        return pl.scan_parquet(files, hive_partitioning=False)
    union: dict[str, pl.DataType] = {}
    for sch in schemas:
        for name, dtype in sch.items():
            union.setdefault(name, dtype)
    return pl.scan_parquet(files, hive_partitioning=False, schema=union, missing_columns="insert")


def read_manifest(out: str | Path) -> dict:
    path = Path(out) / RANGE_FILE
    return json.loads(path.read_text()) if path.exists() else {}


class _ChunkWriter:
    """Per-partition buffers flushed to one file per ``chunk_rows`` rows."""

    def __init__(self, out: Path, chunk_rows: int, decoder: BatchDecoder) -> None:
        self.out, self.chunk_rows, self.decoder = out, chunk_rows, decoder
        self.buffers: dict[int, list[pl.DataFrame]] = {}
        self.sizes: dict[int, int] = {}
        self.records = self.files = 0

    def add(self, frame: pl.DataFrame) -> None:
        part = self.decoder.meta_name("partition")
        for (p,), sub in frame.partition_by(part, as_dict=True, maintain_order=True).items():
            self.buffers.setdefault(p, []).append(sub)
            self.sizes[p] = self.sizes.get(p, 0) + sub.height
            if self.sizes[p] >= self.chunk_rows:
                self.flush(p, whole_chunks_only=True)
        if sum(self.sizes.values()) >= 2 * self.chunk_rows:
            self.flush_all()

    def flush_all(self) -> None:
        for p in list(self.buffers):
            self.flush(p)

    def flush(self, p: int, *, whole_chunks_only: bool = False) -> None:
        """Write the buffer in files of ``chunk_rows``; keep a partial last chunk when asked to."""
        frames = self.buffers.pop(p, [])
        self.sizes.pop(p, None)
        if not frames:
            return
        df = pl.concat(frames, how="diagonal_relaxed")
        keep = df.height % self.chunk_rows if whole_chunks_only else 0
        if keep:
            self.buffers[p], self.sizes[p] = [df.tail(keep)], keep
            df = df.head(df.height - keep)
        folder = self.out / f"partition-{p}"
        folder.mkdir(exist_ok=True)
        offset = self.decoder.meta_name("offset")
        for piece in df.iter_slices(self.chunk_rows):
            first = piece[offset][0]
            tmp = folder / f".part-{first:020d}.parquet.tmp"
            piece.write_parquet(tmp, compression="zstd", statistics=True)
            tmp.rename(folder / f"part-{first:020d}.parquet")
            self.files += 1
        self.records += df.height
