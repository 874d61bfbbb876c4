"""A topic read as a table: the latest value per key as of a position (Kafka Streams' KTable).

A compacted or CDC topic is a changelog of a table; a notebook wants the table. ``table(topic,
at=POSITION)`` reads ``[earliest, at)`` through the one bounded-read engine (read_committed, so an
aborted update never shows) and keeps, per key, the record with the greatest offset of its
partition; a tombstone (null value) as that record deletes the key. Records with a null key are
not table rows (Kafka Streams drops them too). Compaction only removes records a later one of the
same key supersedes, so the table of a compacted topic equals the table of its full history.

A key written to two partitions (a producer with a custom partitioner) has two candidate rows; the
one with the later record timestamp wins (then the higher partition), and a warning says so,
because Kafka itself keeps the two apart.
"""

from __future__ import annotations

import logging

import numpy as np
import polars as pl

from kstream_lab.kafka.read.batch import Batch
from kstream_lab.replay.decode import BatchDecoder
from kstream_lab.replay.reader import Position, iter_frames, resolve_range
from kstream_lab.settings import Settings, get_settings

log = logging.getLogger(__name__)


class _TombstoneDecoder(BatchDecoder):
    """The usual decoder, also noting the offsets of null values: a decoded tombstone is a row of null
    fields, which cannot be told from a value whose fields are all null."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tombstones: dict[int, set[int]] = {}

    def decode(self, raw: Batch) -> pl.DataFrame:
        if raw.values.nulls:
            offsets = raw.offsets[np.asarray(raw.values.nulls, dtype=np.int64)]
            self.tombstones.setdefault(raw.partition, set()).update(int(o) for o in offsets)
        return super().decode(raw)


def table(
    topic: str,
    at: Position = "latest",
    *,
    partitions: list[int] | None = None,
    value_format: str = "auto",
    errors: str = "skip",
    settings: Settings | None = None,
) -> pl.DataFrame:
    """The latest value per key of ``topic`` as of ``at`` (exclusive, like replay's ``end``: an offset,
    ``{partition: offset}``, a time, ``"15m ago"``, ``"latest"``), one row per live key, sorted by key.

    The columns are replay's (topic, partition, offset, timestamp, key, headers, value fields), so a
    row says which record made it current.
    """
    settings = settings or get_settings()
    rng = resolve_range(settings, topic, "earliest", at, partitions)
    decoder = _TombstoneDecoder(settings, topic, value_format, errors=errors)
    frames = [f for f in iter_frames(settings, rng, decoder=decoder) if f.height]
    if not frames:
        return decoder.empty_frame()
    m = decoder.meta_name
    names = (m("key"), m("partition"), m("offset"), m("timestamp"))
    dead = [(p, o) for p, offsets in decoder.tombstones.items() for o in offsets]
    return latest_per_key(topic, pl.concat(frames, how="diagonal_relaxed", rechunk=False), dead, names)


def latest_per_key(
    topic: str,
    rows: pl.DataFrame,
    tombstones: list[tuple[int, int]],
    names: tuple[str, str, str, str] = ("key", "partition", "offset", "timestamp"),
) -> pl.DataFrame:
    """The fold of :func:`table` over decoded ``rows``: the last record per key and partition by offset,
    then across partitions by timestamp; keys whose last record is a tombstone ((partition, offset)
    in ``tombstones``) are gone, and null keys are not rows."""
    key, part, off, ts = names
    live = rows.filter(pl.col(key).is_not_null())
    tomb = pl.DataFrame(tombstones, schema={part: live.schema[part], off: pl.Int64}, orient="row")
    latest = (
        live.join(tomb.with_columns(pl.lit(True).alias("__tombstone")), on=[part, off], how="left")
        .sort([part, off])
        .group_by([key, part], maintain_order=True)
        .last()
    )
    _warn_split_keys(topic, latest, key, part)
    current = latest.sort([ts, part]).group_by(key, maintain_order=True).last()
    return current.filter(pl.col("__tombstone").is_null()).sort(key).select(live.columns)


def _warn_split_keys(topic: str, latest: pl.DataFrame, key: str, part: str) -> None:
    split = latest.group_by(key).agg(pl.col(part).n_unique().alias("n")).filter(pl.col("n") > 1)
    if split.height:
        log.warning(
            "%s: %d key(s) were written to more than one partition (e.g. %r); the later record wins",
            topic,
            split.height,
            split[key][0],
        )
