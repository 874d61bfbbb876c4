"""Bulk decoding of Confluent-framed JSON Schema and Protobuf values into one Polars frame.

JSON Schema: the packed values (``kstream_lab.packed``: one value per line) are copied once with
each value's 5-byte header overwritten by spaces -- leading whitespace is still valid JSON -- and
the whole buffer is read by ``pl.read_ndjson`` with the dtypes the writer schema implies
(:func:`kstream_lab.schemas.json_schema.polars_schema`): no Python object per record. Then the
checks a column can do at once: required properties present, ``minimum``/``maximum`` and
``enum`` of top-level properties. Everything else in the schema is checked by the per-record
decoder only (docs/schemas.md). A batch that does not read (a value that is not JSON, or whose type
does not fit its column) is bisected down to the bad records by the JSON batch decoder.

Protobuf ("the repeated-field trick"): for each (schema id, message indexes) group, the bodies are
laid out as the encoding of a wrapper message ``Batch { repeated M items = 1; }`` -- each body
preceded by the tag byte 0x0A and its length as a varint, the prefixes built with NumPy and joined to
the header-stripped bodies in Arrow -- and parsed by the
protobuf runtime (upb, C) in one ``FromString``. The columns are then read field by field
(``map(attrgetter(name), items)``: a C loop, one value object per field value but no dict per
record); nested messages become structs, enums their names, repeated fields lists. A group that
does not parse is bisected to find the bad bodies, each of which gets its reason.
"""

from __future__ import annotations

import io
from operator import attrgetter
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError
from polars.exceptions import PanicException

from kstream_lab.packed import PackedValues
from kstream_lab.schemas.avro import HEADER, Problem
from kstream_lab.schemas.bulk import DecodedBatch, DecodeFailure, _assemble, _headers, decode_json_batch
from kstream_lab.schemas.formats import (
    Schemas,
    Writer,
    WriterCache,
    body_problem,
    field_value,
    framing_problem,
    message_dict,
    message_indexes,
)
from kstream_lab.schemas.quiet import rust_panics_muted

CHUNK = 65_536


class _ArrowValues:
    """Value ``i`` as bytes (None for a null), read from the Arrow array: failure paths only."""

    __slots__ = ("arr",)

    def __init__(self, arr: pa.Array) -> None:
        self.arr = arr

    def __getitem__(self, i: int) -> bytes | None:
        value: bytes | None = self.arr[i].as_py()
        return value


def packed_array(values: PackedValues) -> pa.Array:
    """The packed values as an Arrow large_binary array without a Python object per value: the
    buffer as it stands with each value's separator, then the separators cut off in Arrow."""
    n = len(values)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.asarray(values.lengths, dtype=np.int64) + 1, out=offsets[1:])
    validity = None
    if values.nulls:
        valid = np.ones(n, dtype=bool)
        valid[values.nulls] = False
        validity = pa.array(valid).buffers()[1]
    whole = pa.Array.from_buffers(
        pa.large_binary(),
        n,
        [validity, pa.py_buffer(offsets), pa.py_buffer(values.data)],
        null_count=len(values.nulls),
    )
    return pc.binary_slice(whole, 0, -1)


def _prepare(values: list[bytes | None] | PackedValues) -> tuple[Any, pa.Array]:
    """Values indexable one by one (for failures) and as one Arrow array (for the bulk path)."""
    if isinstance(values, PackedValues):
        arr = packed_array(values)
        return _ArrowValues(arr), arr
    return values, pa.array(values, type=pa.large_binary())


def _groups(
    values: Any, arr: pa.Array, writers: WriterCache, kind: str, fmt: str
) -> tuple[list[tuple[Writer, np.ndarray]], list[DecodeFailure]]:
    """Framed values grouped by schema id (input order kept), and the failures of the rest."""
    ok, ids, _ = _headers(arr)
    failures = [
        DecodeFailure.of(i, framing_problem(values[i], fmt) or Problem("bad_header", "bad header"))
        for i in np.flatnonzero(~ok).tolist()
    ]
    out = []
    positions = np.flatnonzero(ok)
    for schema_id in np.unique(ids[positions]).tolist():
        idx = positions[ids[positions] == schema_id]
        writer = writers.get(schema_id)  # an outage raises WriterSchemaUnavailable: retry the batch
        if isinstance(writer, Problem):
            failures += [DecodeFailure.of(i, writer) for i in idx.tolist()]
        elif writer.parsed.kind != kind:
            problem = Problem("schema_refused", f"schema id {schema_id} is a {writer.parsed.kind} schema, not {kind}")
            failures += [DecodeFailure.of(i, problem) for i in idx.tolist()]
        else:
            out.append((writer, idx))
    return out, failures


# ---- JSON Schema ---------------------------------------------------------------------------------


def _json_checks(frame: pl.DataFrame, writer: Writer) -> dict[int, str]:
    """Row -> why it violates what can be checked on columns (required, bounds, enum)."""
    from kstream_lab.schemas.json_schema import _JsonChecker, required_columns

    schema, _ = _JsonChecker.deref(writer.parsed.schema, writer.parsed.named.resolver(""))
    props = (schema.get("properties") or {}) if isinstance(schema, dict) else {}
    bad: dict[int, str] = {}
    checks: list[tuple[pl.Expr, str]] = []
    for name in required_columns(writer.parsed):
        if name in frame.columns:
            checks.append((pl.col(name).is_null(), f"required property {name!r} is missing or null"))
        else:
            checks.append((pl.lit(True), f"required property {name!r} is missing"))
    for name, prop in props.items():
        if not isinstance(prop, dict) or name not in frame.columns:
            continue
        col = pl.col(name)
        for keyword, test in (
            ("minimum", lambda c, v: c < v),
            ("maximum", lambda c, v: c > v),
            ("exclusiveMinimum", lambda c, v: c <= v),
            ("exclusiveMaximum", lambda c, v: c >= v),
        ):
            value = prop.get(keyword)
            if isinstance(value, int | float) and not isinstance(value, bool) and frame[name].dtype.is_numeric():
                checks.append((test(col, value).fill_null(False), f"{name}: {keyword} {value} not met"))
        if isinstance(prop.get("enum"), list) and frame[name].dtype == pl.String:
            allowed = [v for v in prop["enum"] if isinstance(v, str)]
            checks.append((col.is_in(allowed).not_().fill_null(False), f"{name}: not one of {prop['enum']}"))
    if not checks:
        return bad
    flags = frame.select([expr.alias(f"c{k}") for k, (expr, _) in enumerate(checks)])
    for k, (_, message) in enumerate(checks):
        column = flags[f"c{k}"]
        if column.len() == 1 and frame.height != 1:  # a literal
            rows: list[int] | range = range(frame.height) if column.item() else range(0)
        else:
            rows = np.flatnonzero(column.to_numpy()).tolist()
        for row in rows:
            bad.setdefault(row, message)
    return bad


def _blanked(packed: PackedValues, idx: np.ndarray) -> bytes:
    """The packed buffer with the headers of values ``idx`` overwritten by spaces (one copy)."""
    data = np.frombuffer(packed.data, dtype=np.uint8).copy()
    starts = np.asarray(packed.starts, dtype=np.int64)[idx]
    for k in range(HEADER):
        data[starts + k] = 0x20
    return data.tobytes()


def decode_json_schema_batch(
    values: list[bytes | None] | PackedValues, registry: Schemas, *, writers: WriterCache | None = None
) -> DecodedBatch:
    """Decode Confluent-framed JSON Schema values in bulk (see the module docstring)."""
    writers = writers or WriterCache(registry)
    packed = values if isinstance(values, PackedValues) else None
    plain, arr = _prepare(values)
    groups, failures = _groups(plain, arr, writers, "JSON", "json_schema")
    frames: list[pl.DataFrame] = []
    kept: list[np.ndarray] = []
    from kstream_lab.schemas.json_schema import polars_schema

    for writer, idx in groups:
        schema = polars_schema(writer.parsed)
        frame = None
        if packed is not None and len(groups) == 1 and not failures:  # every value of the batch, framed alike
            try:
                with rust_panics_muted():
                    frame = pl.read_ndjson(io.BytesIO(_blanked(packed, idx)), schema=schema)
            except (Exception, PanicException):
                frame = None
            if frame is not None and frame.height != len(idx):
                frame = None
        if frame is not None:
            parts = [(frame, idx)]
        else:
            bodies = pc.binary_slice(arr.take(pa.array(idx)), HEADER, 2**31 - 1).to_pylist()
            batch = decode_json_batch(bodies, dict(schema) if schema else None)
            failures += [
                DecodeFailure(int(idx[f.index]), f"not valid for its columns: {f.reason}", "not_json")
                for f in batch.failures
            ]
            parts = [(batch.frame, idx[batch.indices])] if batch.frame.height else []
        for part, where in parts:
            bad = _json_checks(part, writer)
            if bad:
                failures += [
                    DecodeFailure(int(where[row]), f"schema id {writer.schema_id}: {why}", "schema_violation")
                    for row, why in bad.items()
                ]
                keep = np.asarray(sorted(set(range(part.height)) - set(bad)), dtype=np.int64)
                part, where = part[keep], where[keep]
            frames.append(part)
            kept.append(np.asarray(where, dtype=np.int64))
    batch = _assemble(frames, kept, failures, len(groups) > 1)
    batch.schema_ids = [w.schema_id for w, _ in groups]
    return batch


# ---- Protobuf ------------------------------------------------------------------------------------

_INT32 = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32}
_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64}
_DTYPES: dict[int, Any] = {
    **dict.fromkeys(_INT32, pl.Int32),
    **dict.fromkeys(_INT64, pl.Int64),
    FieldDescriptor.TYPE_UINT32: pl.UInt32,
    FieldDescriptor.TYPE_FIXED32: pl.UInt32,
    FieldDescriptor.TYPE_UINT64: pl.UInt64,
    FieldDescriptor.TYPE_FIXED64: pl.UInt64,
    FieldDescriptor.TYPE_FLOAT: pl.Float32,
    FieldDescriptor.TYPE_DOUBLE: pl.Float64,
    FieldDescriptor.TYPE_BOOL: pl.Boolean,
    FieldDescriptor.TYPE_STRING: pl.String,
    FieldDescriptor.TYPE_BYTES: pl.Binary,
    FieldDescriptor.TYPE_ENUM: pl.String,
}


def _repeated(f: FieldDescriptor) -> bool:
    if hasattr(f, "is_repeated"):
        return bool(f.is_repeated)
    return bool(f.label == FieldDescriptor.LABEL_REPEATED)


def _is_message(f: FieldDescriptor) -> bool:
    return f.type in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_GROUP)


def _enum_names(f: FieldDescriptor, ints: list[int]) -> pl.Series:
    names = {v.number: v.name for v in f.enum_type.values}
    return pl.Series(f.name, ints, dtype=pl.Int64).replace_strict(
        names, default=pl.Series(ints).cast(pl.String), return_dtype=pl.String
    )


def message_columns(items: Any, desc: Descriptor) -> dict[str, pl.Series]:
    """One Series per field of ``desc`` over the parsed messages ``items``."""
    out: dict[str, pl.Series] = {}
    items = list(items)  # one wrapper object per message, made once (each field reads them all)
    n = len(items)
    for f in desc.fields:
        name = f.name
        if f.message_type is not None and f.message_type.GetOptions().map_entry or (_repeated(f) and _is_message(f)):
            out[name] = pl.Series(name, [field_value(m, f) for m in items])  # rare shapes: per record
            continue
        raw = list(map(attrgetter(name), items))
        if _repeated(f):
            inner = _DTYPES.get(f.type)
            if f.type == FieldDescriptor.TYPE_ENUM:
                names = {v.number: v.name for v in f.enum_type.values}
                out[name] = pl.Series(name, [[names.get(x, str(x)) for x in r] for r in raw], dtype=pl.List(pl.String))
            else:
                out[name] = pl.Series(name, [list(r) for r in raw], dtype=pl.List(inner) if inner else None)
            continue
        present = None
        if getattr(f, "has_presence", False):
            has = attrgetter("HasField")
            present = np.fromiter((has(m)(name) for m in items), dtype=bool, count=n)
        if _is_message(f):
            sub = message_columns(raw, f.message_type)
            series = pl.DataFrame(sub, height=n).to_struct(name) if sub else pl.Series(name, [{}] * n)
        elif f.type == FieldDescriptor.TYPE_ENUM:
            series = _enum_names(f, raw)
        else:
            series = pl.Series(name, raw, dtype=_DTYPES[f.type])
        if present is not None and not present.all():
            series = pl.select(pl.when(pl.Series(present)).then(series).otherwise(None).alias(name)).to_series()
        out[name] = series
    return out


class _ProtoGroup:
    """Values of one (schema id, message indexes): wrapper class, bulk parse, bisection."""

    def __init__(self, writer: Writer, indexes: tuple[int, ...]) -> None:
        from kstream_lab.schemas.protobuf import message_at, message_class

        self.writer = writer
        self.desc = message_at(writer.parsed.schema, list(indexes))
        self.single = message_class(self.desc)
        pool = writer.parsed.named
        label = f"B{writer.schema_id}_{'_'.join(map(str, indexes))}"
        try:
            wrapper = pool.FindMessageTypeByName(f"kstream_lab_bulk__.{label}")
        except KeyError:
            fdp = descriptor_pb2.FileDescriptorProto(
                name=f"kstream_lab_bulk__/{label}.proto", package="kstream_lab_bulk__", syntax="proto3"
            )
            fdp.dependency.append(writer.parsed.schema.name)
            fld = fdp.message_type.add(name=label).field.add(name="items", number=1)
            fld.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
            fld.label = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
            fld.type_name = "." + self.desc.full_name
            pool.Add(fdp)
            wrapper = pool.FindMessageTypeByName(f"kstream_lab_bulk__.{label}")
        self.batch = message_class(wrapper)

    def parse(self, bodies: pa.Array) -> Any:
        """The wrapper message over ``bodies``; DecodeError if any is bad."""
        return self.batch.FromString(repeated_field(bodies)).items


def repeated_field(bodies: pa.Array) -> bytes:
    """Each body as field 1 (wire type 2) of one message -- 0x0A, varint length, body -- built in
    NumPy (the prefixes) and Arrow (prefix and body joined element-wise), no Python per value."""
    n = len(bodies)
    offsets = np.frombuffer(bodies.buffers()[1], dtype=np.int64)[bodies.offset : bodies.offset + n + 1]
    lens = np.diff(offsets)
    nv = np.ones(n, dtype=np.int64)
    for bits in (7, 14, 21, 28):
        nv += lens >= (1 << bits)
    poff = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(1 + nv, out=poff[1:])
    pdata = np.empty(int(poff[-1]), dtype=np.uint8)
    pdata[poff[:-1]] = 0x0A
    for k in range(5):
        m = nv > k
        byte = ((lens >> (7 * k)) & 0x7F) | np.where(nv > k + 1, 0x80, 0)
        pdata[poff[:-1][m] + 1 + k] = byte[m]
    prefixes = pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(poff), pa.py_buffer(pdata)])
    joined = pc.binary_join_element_wise(prefixes, bodies, pa.scalar(b"", pa.large_binary()))
    jo = np.frombuffer(joined.buffers()[1], dtype=np.int64)[joined.offset : joined.offset + n + 1]
    buf = joined.buffers()[2]
    return b"" if buf is None else buf.slice(int(jo[0]), int(jo[-1] - jo[0])).to_pybytes()


def decode_protobuf_batch(
    values: list[bytes | None] | PackedValues, registry: Schemas, *, writers: WriterCache | None = None
) -> DecodedBatch:
    """Decode Confluent-framed Protobuf values in bulk (see the module docstring)."""
    writers = writers or WriterCache(registry)
    plain, arr = _prepare(values)
    groups, failures = _groups(plain, arr, writers, "PROTOBUF", "protobuf")
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    buf = arr.buffers()[2]
    data = np.frombuffer(buf, dtype=np.uint8) if buf is not None else np.zeros(0, dtype=np.uint8)
    frames: list[pl.DataFrame] = []
    kept: list[np.ndarray] = []
    for writer, idx in groups:
        starts, ends = offsets[idx], offsets[idx + 1]
        simple = (ends > starts + HEADER) & (data[np.minimum(starts + HEADER, len(data) - 1)] == 0)
        parts: dict[tuple[int, ...], tuple[np.ndarray, pa.Array]] = {}
        if simple.any():  # message index [0], a single 0 byte: the bodies start 6 bytes in
            where = idx[simple]
            parts[(0,)] = (where, pc.binary_slice(arr.take(pa.array(where)), HEADER + 1, 2**31 - 1))
        others: dict[tuple[int, ...], tuple[list[int], list[bytes]]] = {}
        for i in idx[~simple].tolist():  # other message indexes, or none: record by record
            value = plain[i] or b""
            if len(value) == HEADER:
                failures.append(DecodeFailure.of(i, Problem("truncated", "no message indexes after the header")))
                continue
            try:
                found, start = message_indexes(value)
            except (IndexError, ValueError) as exc:
                failures.append(DecodeFailure.of(i, Problem("bad_message_index", f"unreadable message indexes: {exc}")))
                continue
            got = others.setdefault(tuple(found), ([], []))
            got[0].append(i)
            got[1].append(value[start:])
        for key, (where_list, bodies) in others.items():
            if key in parts:
                prev_where, prev_bodies = parts[key]
                where_list = [*prev_where.tolist(), *where_list]
                bodies = [*prev_bodies.to_pylist(), *bodies]
            parts[key] = (np.asarray(where_list, dtype=np.int64), pa.array(bodies, type=pa.large_binary()))
        for indexes, (where, bodies_arr) in parts.items():
            try:
                group = _ProtoGroup(writer, indexes)
            except IndexError:
                problem = Problem(
                    "bad_message_index",
                    f"message indexes {list(indexes)} name no message of schema id {writer.schema_id}",
                )
                failures += [DecodeFailure.of(int(i), problem) for i in where.tolist()]
                continue
            for c in range(0, len(where), CHUNK):
                good = _proto_parts(group, bodies_arr.slice(c, CHUNK), where[c : c + CHUNK], failures)
                for items, rows in good:
                    frames.append(pl.DataFrame(message_columns(items, group.desc), height=len(rows)))
                    kept.append(rows)
    batch = _assemble(frames, kept, failures, True)
    batch.schema_ids = [w.schema_id for w, _ in groups]
    return batch


def _proto_parts(
    group: _ProtoGroup, bodies: pa.Array, where: np.ndarray, failures: list
) -> list[tuple[Any, np.ndarray]]:
    """Parse in one go; on DecodeError split in 16 and retry, down to single records (each with its reason)."""
    try:
        return [(group.parse(bodies), where)]
    except DecodeError as exc:
        if len(where) == 1:
            body = bodies[0].as_py() or b""
            failures.append(DecodeFailure.of(int(where[0]), body_problem(group.writer.schema_id, body, exc)))
            return []
    out = []
    for piece in np.array_split(np.arange(len(where)), min(16, len(where))):
        if len(piece):
            out += _proto_parts(group, bodies.take(pa.array(piece)), where[piece], failures)
    return out


def decode_protobuf_per_record(values: list[bytes | None], registry: Schemas) -> pl.DataFrame:
    """The per-record way (for the bench): parse each value and build a dict, then a frame."""
    from kstream_lab.schemas.formats import ConfluentRecordDecoder

    decode = ConfluentRecordDecoder(registry, "protobuf")
    return pl.DataFrame([decode(v) for v in values])


__all__ = ["decode_json_schema_batch", "decode_protobuf_batch", "message_columns", "message_dict"]
