"""Bulk decoding for replay: a list of record values -> one Polars frame, without a dict per record.

Avro ("the container trick"), common case: every value of the batch has the same schema id, and the
packed values (``kstream_lab.packed``) are read in place as one container block whose records are
frame + body + separator (see ``_one_schema_fast_path``). Otherwise values are grouped by schema
id, the 5-byte headers are stripped in Arrow (no Python per record), and each group's bodies are
wrapped into an in-memory Avro object container file -- header with the writer schema, then a
block = zigzag-varint record count, zigzag-varint byte size, the concatenated bodies, the 16-byte
sync marker -- which ``polars.read_avro`` decodes column-wise in Rust. JSON: the values are joined
with newlines and read by ``polars.read_ndjson`` with an explicit schema when one is known.

Bad records never kill a batch: a chunk that fails to decode is checked record by record with
fastavro, the undecodable ones are reported (input index + reason) and the rest decoded again in
bulk. Event-time columns stay Int64 epoch milliseconds (time logical types are dropped from the
container schema; the encoding is identical), because the aggregation engines work on integer ms.
"""

from __future__ import annotations

import functools
import io
import json
import os
from dataclasses import dataclass, field
from typing import Any

import fastavro
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from polars.exceptions import PanicException

from kstream_lab.kafka.schema_registry import RegistryError
from kstream_lab.packed import SEP, PackedValues
from kstream_lab.schemas.avro import (
    HEADER,
    Problem,
    WriterSchemas,
    body_problem,
    fetch_writer_schema,
    header_problem,
    plain_times,
    refusal_reason,
    trailing_problem,
)
from kstream_lab.schemas.quiet import rust_panics_muted

CHUNK = 65_536
AVRO_TO_POLARS: dict[str, Any] = {
    "long": pl.Int64,
    "int": pl.Int32,
    "string": pl.String,
    "boolean": pl.Boolean,
    "double": pl.Float64,
    "float": pl.Float32,
    "bytes": pl.Binary,
}


@dataclass(frozen=True)
class DecodeFailure:
    """Input position ``index`` did not decode: ``reason`` says why, ``code`` is its stable name
    (the DLQ's ``error.reason``, see :class:`kstream_lab.schemas.avro.Problem`)."""

    index: int
    reason: str
    code: str = "undecodable"

    @classmethod
    def of(cls, index: int, problem: Problem) -> DecodeFailure:
        return cls(index, problem.message, problem.reason)


@dataclass
class DecodedBatch:
    """Decoded rows in input order; ``indices[i]`` is the input position of row i."""

    frame: pl.DataFrame
    indices: np.ndarray
    failures: list[DecodeFailure] = field(default_factory=list)
    schema_ids: list[int] = field(default_factory=list)  # writer schema ids seen (for run lineage)

    @property
    def failed_indices(self) -> list[int]:
        return [f.index for f in self.failures]


# ---- Avro -------------------------------------------------------------------------------------


def _zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _avro_bytes(b: bytes) -> bytes:
    return _zigzag(len(b)) + b


def container(schema_json: str, blocks: list[tuple[int, bytes | pa.Buffer]], sync: bytes | None = None) -> bytes:
    """An Avro object container file with the given (record count, concatenated bodies) blocks."""
    sync = sync or os.urandom(16)
    meta = {b"avro.schema": schema_json.encode(), b"avro.codec": b"null"}
    parts = [
        b"Obj\x01",
        _zigzag(len(meta)),
        *(_avro_bytes(k) + _avro_bytes(v) for k, v in meta.items()),
        _zigzag(0),
        sync,
    ]
    for count, data in blocks:
        parts += [_zigzag(count), _zigzag(len(data)), data, sync]
    return b"".join(parts)


def _headers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ok mask, schema ids (0 where not ok), lengths) computed on Arrow buffers."""
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    lengths = np.diff(offsets)
    ok = lengths >= HEADER
    if arr.null_count:
        ok &= ~np.asarray(arr.is_null())
    ids = np.zeros(n, dtype=np.int64)
    if ok.any():
        data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
        starts = offsets[:-1][ok]
        ok[ok] = data[starts] == 0
        starts = offsets[:-1][ok]
        head = data[starts[:, None] + np.arange(1, HEADER)].astype(np.int64)
        ids[ok] = (head[:, 0] << 24) | (head[:, 1] << 16) | (head[:, 2] << 8) | head[:, 3]
    return ok, ids, lengths


def _bodies(arr: pa.Array, idx: np.ndarray) -> pa.Buffer | bytes:
    """The Avro bodies of records ``idx`` concatenated (headers stripped inside Arrow, no copy to Python)."""
    if len(idx) and idx[-1] - idx[0] + 1 == len(idx):  # a contiguous run: slicing is free
        picked = arr.slice(int(idx[0]), len(idx))
    else:
        picked = arr.take(pa.array(idx))
    sliced = pc.binary_slice(picked, HEADER, 2**31 - 1)
    offsets = np.frombuffer(sliced.buffers()[1], dtype=np.int64)[sliced.offset : sliced.offset + len(sliced) + 1]
    buf = sliced.buffers()[2]
    return b"" if buf is None else buf.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


def _read_container(schema_json: str, count: int, bodies: bytes | pa.Buffer) -> pl.DataFrame | None:
    try:
        with rust_panics_muted():  # polars reports corrupt blocks as errors, or panics
            frame = pl.read_avro(io.BytesIO(container(schema_json, [(count, bodies)])))
    except (Exception, PanicException):
        return None
    return frame if frame.height == count else None


def _bulk_readable(plain: Any) -> bool:
    """A record schema that Polars' Avro reader decodes (else fastavro, record by record)."""
    return isinstance(plain, dict) and plain.get("type") == "record" and polars_can_read(plain)


def polars_can_read(schema: Any) -> bool:
    """Whether polars' Avro reader handles every type in ``schema`` (it has no maps, nor unions of
    several non-null types); otherwise the group is decoded with fastavro."""
    if isinstance(schema, list):
        return len([b for b in schema if b != "null"]) <= 1 and all(polars_can_read(b) for b in schema)
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "map":
            return False
        if kind in ("record", "error"):
            return all(polars_can_read(f["type"]) for f in schema.get("fields", []))
        if kind == "array":
            return polars_can_read(schema["items"])
        return not isinstance(kind, dict | list) or polars_can_read(kind)
    return True


class _GroupDecoder:
    """Decodes the records of one schema id: containers for polars, fastavro where it must."""

    def __init__(self, values: list, arr: pa.Array, schema_id: int, writer_text: str) -> None:
        self.values, self.arr, self.schema_id = values, arr, schema_id
        plain = plain_times(json.loads(writer_text))
        self.schema_json = json.dumps(plain)
        self.bulk = _bulk_readable(plain)
        self.writer = fastavro.parse_schema(plain)
        self.frames: list[pl.DataFrame] = []
        self.kept: list[np.ndarray] = []
        self.failures: list[DecodeFailure] = []

    def decode(self, part: np.ndarray) -> None:
        """One container for ``part``; when that fails, retry in 16 pieces, then record by record."""
        frame = _read_container(self.schema_json, len(part), _bodies(self.arr, part)) if self.bulk else None
        if frame is not None:
            self.frames.append(frame)
            self.kept.append(part)
        elif self.bulk and len(part) > 1024:
            for piece in np.array_split(part, 16):
                self.decode(piece)
        else:
            self.each(part)

    def each(self, part: np.ndarray) -> None:
        """Per-record fastavro pass: report the bad records, decode the rest (in bulk when possible)."""
        good, rows = [], []
        for i in part.tolist():
            body = io.BytesIO(self.values[i])
            body.seek(HEADER)
            try:
                row = fastavro.schemaless_reader(body, self.writer, None)
            except Exception as exc:  # EOFError, UnicodeDecodeError, IndexError, ValueError ...
                ran_out = body.tell() >= len(self.values[i])
                self.failures.append(DecodeFailure.of(i, body_problem(self.schema_id, exc, ran_out=ran_out)))
                continue
            rest = len(self.values[i]) - body.tell()
            if rest:
                self.failures.append(DecodeFailure.of(i, trailing_problem(self.schema_id, rest)))
                continue
            good.append(i)
            rows.append(row)
        if not good:
            return
        kept = np.asarray(good, dtype=np.int64)
        frame = _read_container(self.schema_json, len(kept), _bodies(self.arr, kept)) if self.bulk else None
        self.frames.append(frame if frame is not None else pl.DataFrame(rows, infer_schema_length=None))
        self.kept.append(kept)


def _project(frame: pl.DataFrame, reader: dict) -> pl.DataFrame:
    """Resolve a decoded frame to the reader schema's top-level fields (defaults, promotions)."""
    cols = []
    for f in reader["fields"]:
        ftype = plain_times(f["type"])
        dtype = AVRO_TO_POLARS.get(ftype) if isinstance(ftype, str) else None
        if f["name"] in frame.columns:
            col = pl.col(f["name"])
            cols.append(col.cast(dtype) if dtype is not None else col)
        elif "default" in f:
            cols.append(pl.lit(f["default"], dtype=dtype).alias(f["name"]))
        else:
            raise ValueError(f"field {f['name']!r} is missing in the data and has no default")
    return frame.select(cols)


def decode_avro_batch(
    values: list[bytes | None] | PackedValues,
    registry: WriterSchemas,
    *,
    reader_schema: str | None = None,
    chunk: int = CHUNK,
) -> DecodedBatch:
    """Decode Confluent-framed Avro values in bulk; see the module docstring for how and why.

    With ``reader_schema`` every schema id's rows are resolved to the reader's fields (missing fields
    get their defaults), so data written with v1 and v2 of a schema lands in one set of columns.
    A registry that cannot answer raises WriterSchemaUnavailable (the values are fine: retry them);
    a schema id it refuses makes failures of that id's records.
    """
    if not reader_schema:
        fast = _one_schema_fast_path(values if isinstance(values, PackedValues) else PackedValues.of(values), registry)
        if fast is not None:
            return fast
    if isinstance(values, PackedValues):
        values = values.values()
    arr = pa.array(values, type=pa.large_binary())
    ok, ids, _ = _headers(arr)
    failures = [
        DecodeFailure.of(i, header_problem(values[i]) or Problem("bad_header", "bad header"))
        for i in np.flatnonzero(~ok).tolist()
    ]
    reader = plain_times(json.loads(reader_schema)) if reader_schema else None
    frames: list[pl.DataFrame] = []
    kept: list[np.ndarray] = []
    positions = np.flatnonzero(ok)
    unique, inverse = np.unique(ids[positions], return_inverse=True)
    # No well-framed value at all (a batch of one poison record): no groups -- np.split would make
    # one empty group for no schema id, which crashed the aggregator on every retry of such a batch.
    groups = (
        np.split(positions[np.argsort(inverse, kind="stable")], np.cumsum(np.bincount(inverse))[:-1])
        if positions.size
        else []
    )
    for schema_id, idx in zip(unique.tolist(), groups, strict=True):
        try:
            writer_text = fetch_writer_schema(registry, schema_id)  # an outage raises: not the records' fault
        except RegistryError as exc:
            failures += [DecodeFailure.of(i, refusal_reason(schema_id, exc)) for i in idx.tolist()]
            continue
        group = _GroupDecoder(values, arr, schema_id, writer_text)
        for start in range(0, len(idx), chunk):
            group.decode(idx[start : start + chunk])
        try:
            group_frames = [_project(f, reader) for f in group.frames] if reader is not None else group.frames
        except ValueError as exc:
            failures += [
                DecodeFailure(i, f"schema id {schema_id} does not resolve to the reader schema: {exc}", "unresolvable")
                for part in group.kept
                for i in part.tolist()
            ] + group.failures
            continue
        frames += group_frames
        kept += group.kept
        failures += group.failures
    batch = _assemble(frames, kept, failures, len(unique) > 1)
    batch.schema_ids = unique.tolist()
    return batch


FRAME_FIELD = "__confluent_frame__"
SEP_FIELD = "__separator__"


@functools.lru_cache(maxsize=64)
def _framed_schema(writer_text: str) -> tuple[str, list[str]] | None:
    """The writer schema as packed values lay records out: the 5-byte Confluent frame as a leading
    ``fixed`` field, the separator after each value as a trailing 1-byte ``fixed`` field; plus the
    writer's own field names. None when Polars cannot read the schema in bulk."""
    plain = plain_times(json.loads(writer_text))
    if not _bulk_readable(plain):
        return None
    framed = {
        "type": "record",
        "name": "ConfluentFramed__",
        "fields": [
            {"name": FRAME_FIELD, "type": {"type": "fixed", "name": "ConfluentFrame__", "size": HEADER}},
            *plain["fields"],
            {"name": SEP_FIELD, "type": {"type": "fixed", "name": "PackedSeparator__", "size": len(SEP)}},
        ],
    }
    if plain.get("namespace"):
        framed["namespace"] = plain["namespace"]
    return json.dumps(framed), [f["name"] for f in plain["fields"]]


def _one_schema_fast_path(packed: PackedValues, registry: WriterSchemas) -> DecodedBatch | None:
    """The common case in one pass: every value framed with the same schema id, none corrupt.

    The packed buffer is read as it is -- no header stripping, no copy per value -- by Polars as
    records of the writer schema between a leading 5-byte frame field and a trailing separator
    field. Then one check over the result: every record's frame must be the first one's (magic
    byte, schema id) and every separator a newline. A value of the wrong length -- cut, or with
    trailing bytes -- shifts every record after it, so the check sees it; so does a value framed
    with another schema id. Anything else returns None: the general path sorts it out.
    """
    n = len(packed)
    if not n or packed.nulls or min(packed.lengths) < HEADER:
        return None
    first = packed.data[:HEADER]
    if first[0] != 0:
        return None
    schema_id = int.from_bytes(first[1:HEADER], "big")
    try:
        framed = _framed_schema(fetch_writer_schema(registry, schema_id))  # an outage raises
    except RegistryError:
        return None  # refused: the general path gives each record its reason
    if framed is None:
        return None
    schema_json, columns = framed
    data = b"".join([_container_prefix(schema_json, n, len(packed.data)), packed.data, _SYNC])
    try:
        with rust_panics_muted():
            frame = pl.read_avro(io.BytesIO(data))
    except (Exception, PanicException):
        return None
    if frame.height != n:
        return None
    ok = frame.select((pl.col(FRAME_FIELD) == pl.lit(first)).all() & (pl.col(SEP_FIELD) == pl.lit(SEP)).all())
    if not ok.item():
        return None
    return DecodedBatch(frame.select(columns), np.arange(n, dtype=np.int64), [], [schema_id])


_SYNC = os.urandom(16)


def _container_prefix(schema_json: str, count: int, size: int) -> bytes:
    """Container header plus the block's record count and byte size: the bodies and sync follow."""
    head = container(schema_json, [], _SYNC)
    return head + _zigzag(count) + _zigzag(size)


def _assemble(
    frames: list[pl.DataFrame], kept: list[np.ndarray], failures: list[DecodeFailure], reorder: bool
) -> DecodedBatch:
    failures.sort(key=lambda f: f.index)
    if not frames:
        return DecodedBatch(pl.DataFrame(), np.zeros(0, dtype=np.int64), failures)
    indices = np.concatenate(kept)
    frame = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
    if reorder or (len(indices) > 1 and bool((np.diff(indices) < 0).any())):
        order = np.argsort(indices, kind="stable")
        frame, indices = frame[order], indices[order]
    return DecodedBatch(frame, indices, failures)


# ---- JSON -------------------------------------------------------------------------------------


def polars_schema(avro_text: str) -> dict[str, Any] | None:
    """Polars dtypes for a flat Avro record schema (None when a field is not a simple type)."""
    schema = plain_times(json.loads(avro_text))
    out: dict[str, Any] = {}
    for f in schema.get("fields", []):
        ftype = f["type"]
        if isinstance(ftype, list):
            non_null = [t for t in ftype if t != "null"]
            ftype = non_null[0] if len(non_null) == 1 else None
        if not isinstance(ftype, str) or ftype not in AVRO_TO_POLARS:
            return None
        out[f["name"]] = AVRO_TO_POLARS[ftype]
    return out


def _read_json(values: list, idx: list[int], schema: dict | None) -> tuple[pl.DataFrame | None, str]:
    joined = b"\n".join([values[i] for i in idx])
    if joined.count(b"\n") != len(idx) - 1:  # a value with raw newlines: whitespace outside strings
        joined = b"\n".join([values[i].replace(b"\n", b" ").replace(b"\r", b" ") for i in idx])
    try:
        with rust_panics_muted():
            frame = pl.read_ndjson(io.BytesIO(joined), schema=schema)
    except (Exception, PanicException) as exc:
        return None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if frame.height != len(idx):
        return None, f"{frame.height} rows for {len(idx)} values"
    return frame, ""


def _json_parts(values: list, idx: list[int], schema: dict | None, out: list, failures: list) -> None:
    """Decode ``idx`` in one go; on failure split in halves until the bad records are isolated."""
    frame, error = _read_json(values, idx, schema)
    if frame is not None:
        out.append((frame, idx))
    elif len(idx) == 1:
        try:
            json.loads(values[idx[0]])
            reason = f"JSON does not match the expected columns/types: {error}"
        except ValueError as exc:
            reason = f"not valid JSON: {exc}"
        failures.append(DecodeFailure(idx[0], reason))
    else:
        mid = len(idx) // 2
        _json_parts(values, idx[:mid], schema, out, failures)
        _json_parts(values, idx[mid:], schema, out, failures)


def _json_objects(values: list) -> tuple[np.ndarray, list[DecodeFailure]]:
    """Mask of values that can be JSON objects ('{' ... '}'), checked on Arrow buffers."""
    arr = pa.array(values, type=pa.large_binary())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    lengths = np.diff(offsets)
    ok = lengths > 0
    if arr.null_count:
        ok &= ~np.asarray(arr.is_null())
    if ok.any():
        data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
        ok[ok] = (data[offsets[:-1][ok]] == ord("{")) & (data[offsets[1:][ok] - 1] == ord("}"))
    failures = []
    for i in np.flatnonzero(~ok).tolist():
        v = values[i]
        stripped = v.strip() if v else b""
        if stripped[:1] == b"{" and stripped[-1:] == b"}":
            ok[i] = True
        else:
            failures.append(
                DecodeFailure(
                    i,
                    "null value (tombstone)"
                    if v is None
                    else "empty value"
                    if not stripped
                    else f"not a JSON object: starts with {v[:12]!r}",
                )
            )
    return ok, failures


def decode_json_batch(
    values: list[bytes | None], schema: dict[str, Any] | None = None, *, chunk: int = 16_384
) -> DecodedBatch:
    """Decode JSON object values with ``pl.read_ndjson`` on the newline-joined bytes.

    ``schema`` (column -> Polars dtype, e.g. from :func:`polars_schema`) fixes the dtypes instead of
    inferring them, so integer cents stay Int64 even when a batch happens to look like floats.
    Values that cannot be objects are screened out on the Arrow buffers; chunks that still fail
    are bisected to isolate the bad records.
    """
    ok, failures = _json_objects(values)
    idx = np.flatnonzero(ok).tolist()
    parts: list[tuple[pl.DataFrame, list[int]]] = []
    for start in range(0, len(idx), chunk):
        _json_parts(values, idx[start : start + chunk], schema, parts, failures)
    frames = [p[0] for p in parts]
    if schema is None and len(frames) > 1:  # inferred dtypes may differ per chunk
        frames = [f.cast(frames[0].schema, strict=False) if f.columns == frames[0].columns else f for f in frames]
    kept = [np.asarray(p[1], dtype=np.int64) for p in parts]
    return _assemble(frames, kept, failures, reorder=False)
