"""The one batch type of a bounded read: records of one partition in offset order, in columns.

Both loops hand out :class:`Batch` (the Python loop from confluent-kafka's Message methods, the native
loop from the C loop's NumPy/Arrow columns), so readers never ask which loop ran. The columns are
kept in the form each loop makes cheaply -- converting them here would add per-record work to the
fetch thread, which bounds replay -- and only through forms every reader takes as they are:

* ``values``: :class:`~kstream_lab.packed.PackedValues` (both loops);
* ``offsets``: an int64 NumPy array, computed on first use from the runs the Python loop keeps;
* ``keys``: a sequence of ``bytes | None`` (a list, or an Arrow large_binary array), or None when
  not extracted; ``pl.Series(keys, dtype=pl.Binary)`` and ``pa.array`` take both;
* ``timestamps``: a sequence of epoch ms (a list, or an int64 array), or None when not extracted;
* ``headers``: an Arrow ``list<struct<key, value>>`` array, or None when no record had any (or they
  were not extracted). The Python loop's lists of tuples are converted on first use, in the reader's
  thread: Arrow takes them in C (~50 ns a record against ~4 us for dicts built in Python).

Row selection (:meth:`Batch.metadata` with rows) and plain records (:meth:`Batch.rows`) are
the two places that depend on the column forms; both live here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from kstream_lab.packed import PackedValues

HEADER_TYPE = pa.list_(pa.struct([("key", pa.large_string()), ("value", pa.large_binary())]))
# A run of offsets: (first, count) when contiguous, else the offsets themselves.
Run = tuple[int, int] | list[int]


@dataclass
class Extract:
    """Which per-record metadata the fetch loop takes from each message.

    Keys, timestamps and headers cost the fetch thread ~150 ns per record of GIL-held time (and the
    decoder more to turn them into columns); a read that projects columns turns off what it will not
    show. Flags may be turned off while a read runs (never on again): a batch that lost a column
    midway drops it (None).
    """

    keys: bool = True
    timestamps: bool = True
    headers: bool = True


class Metadata(NamedTuple):
    """A batch's metadata columns (all rows, or the rows asked for), in the forms described above."""

    offsets: np.ndarray
    keys: Any
    timestamps: Any
    headers: pa.Array | None


class Batch:
    """Records of one partition in offset order, in columns (see the module docstring)."""

    __slots__ = ("topic", "partition", "values", "keys", "timestamps", "_offsets", "_headers")

    def __init__(
        self,
        topic: str,
        partition: int,
        values: PackedValues,
        offsets: np.ndarray | list[Run],
        *,
        keys: Sequence | pa.Array | None = None,
        timestamps: Sequence[int] | np.ndarray | None = None,
        headers: pa.Array | list | None = None,
    ) -> None:
        self.topic, self.partition, self.values = topic, partition, values
        self.keys, self.timestamps = keys, timestamps
        self._offsets, self._headers = offsets, headers

    @classmethod
    def of(
        cls,
        topic: str,
        partition: int,
        values: list[bytes | None],
        *,
        keys: list[bytes | None] | None = None,
        offsets: list[int] | None = None,
        timestamps: list[int] | None = None,
        headers: list | None = None,
    ) -> Batch:
        """A batch from plain lists (tests, benchmarks, decoding values held in memory)."""
        n = len(values)
        return cls(
            topic,
            partition,
            PackedValues.of(values),
            np.arange(n, dtype=np.int64) if offsets is None else np.asarray(offsets, dtype=np.int64),
            keys=[None] * n if keys is None else keys,
            timestamps=[0] * n if timestamps is None else timestamps,
            headers=headers if headers is not None and any(headers) else None,
        )

    def __len__(self) -> int:
        return len(self.values)

    @property
    def offsets(self) -> np.ndarray:
        """Every record's offset (int64)."""
        if not isinstance(self._offsets, np.ndarray):
            parts = [
                np.arange(r[0], r[0] + r[1], dtype=np.int64) if isinstance(r, tuple) else np.array(r, dtype=np.int64)
                for r in self._offsets
            ]
            self._offsets = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return self._offsets

    @property
    def runs(self) -> list[Run] | None:
        """The offset runs the Python loop kept (None once computed into an array, or from the native loop)."""
        return None if isinstance(self._offsets, np.ndarray) else self._offsets

    @property
    def headers(self) -> pa.Array | None:
        """The headers as Arrow (the Python loop's lists are converted here, on first use)."""
        if isinstance(self._headers, list):
            self._headers = pa.array(self._headers, HEADER_TYPE)
        return self._headers

    def metadata(self, rows: list[int] | None = None) -> Metadata:
        """The metadata columns, of ``rows`` only when given (the records a decoder kept)."""
        meta = Metadata(self.offsets, self.keys, self.timestamps, self.headers)
        if rows is None:
            return meta
        return Metadata(*(_pick(column, rows) for column in meta))

    def rows(self) -> list[tuple[int, bytes | None, bytes | None, tuple[tuple[str, bytes | None], ...], int]]:
        """(offset, key, value, headers, timestamp) per record as plain Python objects (record-level reads)."""
        n = len(self)
        keys = [None] * n if self.keys is None else _as_list(self.keys)
        stamps = [-1] * n if self.timestamps is None else _as_list(self.timestamps)
        if isinstance(self._headers, list):
            headers = [tuple(h or ()) for h in self._headers]
        elif self._headers is None:
            headers = [()] * n
        else:
            headers = [tuple((e["key"], e["value"]) for e in h or ()) for h in self._headers.to_pylist()]
        return list(zip(self.offsets.tolist(), keys, self.values.values(), headers, stamps, strict=True))


def _as_list(column: Any) -> list:
    if isinstance(column, np.ndarray):
        return column.tolist()
    if isinstance(column, pa.Array):
        return column.to_pylist()
    return list(column)


def _pick(column: Any, rows: list[int]) -> Any:
    """The rows of a column, whichever form the loop gave it (lists, or NumPy/Arrow)."""
    if column is None:
        return None
    if isinstance(column, np.ndarray):
        return column[rows]
    if isinstance(column, pa.Array):
        return column.take(pa.array(rows, pa.int64()))
    return [column[i] for i in rows]
