"""Record values packed into one buffer: the layout the bulk decoders read without a copy.

Every value is followed by a newline, so the buffer is NDJSON as it stands (``pl.read_ndjson``
reads it directly), and the Avro fast path reads it as records with a trailing one-byte field.
The lengths give each value back (failure paths, samples, raw bytes columns). Null values
(tombstones) take no bytes -- an empty line -- and are listed in ``nulls``.

Why a buffer and not a list of bytes: replay builds it chunk by chunk right after ``consume()``,
while the messages are still in cache. Joining 20,000 values later, cold, cost ~4x more of the
GIL-held time that bounds replay, and a list keeps a Python object alive per value.
"""

from __future__ import annotations

from functools import cached_property
from itertools import accumulate
from typing import cast

SEP = b"\n"


class PackedValues:
    """Values back to back, each followed by ``SEP``; see the module docstring."""

    __slots__ = ("data", "lengths", "nulls", "__dict__")

    def __init__(self, data: bytes, lengths: list[int], nulls: list[int] | None = None) -> None:
        self.data, self.lengths, self.nulls = data, lengths, nulls or []

    @classmethod
    def of(cls, values: list[bytes | None]) -> PackedValues:
        builder = PackedBuilder()
        builder.add(values)
        return builder.build()

    def __len__(self) -> int:
        return len(self.lengths)

    @cached_property
    def starts(self) -> list[int]:
        """Where each value begins in ``data``. Plain Python on purpose: a NumPy call would release the
        GIL, and winning it back from the fetch thread can take longer than this loop (see
        ``kstream_lab.replay.decode``)."""
        return list(accumulate((n + 1 for n in self.lengths[:-1]), initial=0)) if self.lengths else []

    def take(self, indices: list[int] | range) -> list[bytes | None]:
        """The values at ``indices`` as bytes (None for nulls)."""
        nulls = set(self.nulls)
        data, starts, lengths = self.data, self.starts, self.lengths
        return [None if i in nulls else data[starts[i] : starts[i] + lengths[i]] for i in indices]

    def values(self) -> list[bytes | None]:
        return self.take(range(len(self)))

    def spread(self, k: int) -> list[bytes]:
        """About ``k`` non-empty values spread evenly over the buffer, found by byte position.

        For sampling (JSON schema checks on every batch): it looks at ~k spots instead of computing
        every value's start, which cost ~40 ns per record of GIL-held time in replay's decoding
        thread. Longer values are a little likelier to be picked; a value containing the separator
        itself can come back as a fragment (callers skip what does not parse).
        """
        data = self.data
        if len(self) <= k:
            return [v for v in self.values() if v]
        out, step = [], max(1, len(data) // k)
        for pos in range(0, len(data), step):
            start = data.find(SEP, pos - 1) + 1 if pos else 0  # the first value starting at or after pos
            end = data.find(SEP, start)  # -1 past the last value
            if end > start:
                out.append(data[start:end])
        return out


class PackedBuilder:
    """Builds a PackedValues from lists of values added one consumed chunk at a time."""

    __slots__ = ("parts", "lengths", "nulls")

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.lengths: list[int] = []
        self.nulls: list[int] = []

    def __len__(self) -> int:
        return len(self.lengths)

    def add(self, values: list[bytes | None]) -> None:
        if not values:
            return
        # Joined as they come, the usual case: a null among them makes join raise, then they are replaced.
        filled = cast("list[bytes]", values)
        try:
            self.parts.append(SEP.join([*filled, b""]))  # the trailing b"" ends the last value with SEP too
        except TypeError:  # nulls among them: they take no bytes
            n = len(self.lengths)
            self.nulls.extend(n + i for i, v in enumerate(values) if v is None)
            filled = [b"" if v is None else v for v in values]
            self.parts.append(SEP.join([*filled, b""]))
        self.lengths.extend(map(len, filled))

    def build(self) -> PackedValues:
        data = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)  # one part: no second copy
        return PackedValues(data, self.lengths, self.nulls)
