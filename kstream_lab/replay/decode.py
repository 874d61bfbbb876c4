"""Turning fetched batches into DataFrames: bulk value decoding plus the metadata columns.

Values are decoded a batch at a time, never record by record: JSON by one ``pl.read_ndjson`` over
the packed values (``kstream_lab.packed``: already one per line), with the schema inferred from the
first batch and grown by fields later batches add; Confluent Avro through ``kstream_lab.schemas``'
batch decoder; Confluent JSON Schema and Protobuf through ``kstream_lab.schemas.bulk_formats``
(NDJSON with the headers blanked; one Protobuf parse per batch); ``raw`` keeps the bytes. ``auto``
looks at a sample of the first batch once: magic byte 0 with a schema id the registry knows -> that
schema's type (avro, json_schema or protobuf), a leading ``{`` -> json, otherwise raw.

Undecodable values (poison records) are dropped and counted (``errors="skip"``, logged once with
where the first one lives) or raise DeserializationError naming topic/partition/offset
(``errors="raise"``). Tombstones (null values) stay, with null value fields.

Metadata columns: topic, partition, offset, timestamp (the record's, UTC), key (UTF-8 text), headers
(list of {key, value}). When a value field already has one of those names -- orders carry their
event ``timestamp`` -- the value keeps the name and the metadata column is prefixed ``kafka_``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from kstream_lab.errors import ConfigError, DeserializationError
from kstream_lab.kafka.read import Batch
from kstream_lab.packed import PackedValues
from kstream_lab.schemas.bulk import decode_json_batch
from kstream_lab.settings import Settings

if TYPE_CHECKING:  # imported where used: the registry client is needed only for Avro
    from kstream_lab.kafka.schema_registry import SchemaRegistry

log = logging.getLogger(__name__)

FORMATS = ("auto", "json", "avro", "json_schema", "protobuf", "raw")
REGISTRY_FORMATS = ("avro", "json_schema", "protobuf")  # Confluent-framed: the writer schema is the registry's
META = ("topic", "partition", "offset", "timestamp", "key", "headers")
HEADERS = pl.List(pl.Struct({"key": pl.String, "value": pl.Binary}))
SchemaArg = pl.Schema | dict | None


def json_schema(schema: SchemaArg) -> pl.Schema | None:
    """An explicit JSON value schema (field -> Polars dtype) checked up front, naming a bad field."""
    if schema is None:
        return None
    if not isinstance(schema, dict | pl.Schema) or not schema:
        raise ConfigError(f"schema= must be a non-empty mapping of field name -> Polars dtype, got {schema!r}")
    for name, dtype in schema.items():
        if not isinstance(name, str):
            raise ConfigError(f"schema field names must be strings, got {name!r}")
        try:
            pl.Schema({name: dtype})
        except (TypeError, ValueError):
            raise ConfigError(
                f"schema field {name!r}: {dtype!r} is not a Polars dtype",
                hint="use e.g. pl.Int64, pl.String, pl.Float64, pl.Datetime('ms')",
            ) from None
    return pl.Schema(schema)


_DTYPE_NAMES = {
    name: getattr(pl, name)
    for name in (
        "String",
        "Binary",
        "Boolean",
        "Int8",
        "Int16",
        "Int32",
        "Int64",
        "UInt8",
        "UInt16",
        "UInt32",
        "UInt64",
        "Float32",
        "Float64",
        "Date",
        "Decimal",
    )
}


def json_schema_from_names(names: object, where: str = "schema") -> pl.Schema:
    """A JSON value schema from dtype names (``{"total_cents": "Int64", "at": "Datetime[ms]"}``), as a
    file or a command line gives it; errors name the field and the accepted names."""
    if not isinstance(names, dict) or not names:
        raise ConfigError(f"{where}: expected a JSON object of field -> dtype name, got {type(names).__name__}")
    out = {}
    for field_name, dtype in names.items():
        if isinstance(dtype, str) and dtype in _DTYPE_NAMES:
            out[field_name] = _DTYPE_NAMES[dtype]
        elif (
            isinstance(dtype, str)
            and dtype.startswith("Datetime[")
            and dtype.endswith("]")
            and dtype[9:-1] in ("ms", "us", "ns")
        ):
            out[field_name] = pl.Datetime(cast(Literal["ms", "us", "ns"], dtype[9:-1]))  # checked just above
        else:
            raise ConfigError(
                f"{where}: field {field_name!r} has dtype {dtype!r}, which is not one of the names known",
                hint=f"use one of {', '.join(_DTYPE_NAMES)} or Datetime[ms|us|ns]",
            )
    return pl.Schema(out)


class BatchDecoder:
    """Decodes the batches of one read; holds the format and schema fixed by the first batch."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        value_format: str = "auto",
        *,
        errors: str = "skip",
        schema: SchemaArg = None,
    ) -> None:
        if value_format not in FORMATS:
            raise ConfigError(f"value_format must be one of {', '.join(FORMATS)}, got {value_format!r}")
        if errors not in ("skip", "raise"):
            raise ConfigError(f"errors must be 'skip' or 'raise', got {errors!r}")
        if schema is not None and value_format in (*REGISTRY_FORMATS, "raw"):
            raise ConfigError(
                f"schema= applies to JSON values, not {value_format}",
                hint="Avro values carry their schema (the registry's); raw values have none",
            )
        self.settings, self.topic, self.errors = settings, topic, errors
        self.format = None if value_format == "auto" else value_format
        self.value_schema: pl.Schema | None = json_schema(schema)
        self.fixed_schema = schema is not None
        self.bad = 0
        self.first_bad: tuple[int, int, str] | None = None
        self._reasons: dict[int, str] = {}  # why records of the current batch failed, by position
        self._avro: SchemaRegistry | None = None
        self._writers: Any = None  # kstream_lab.schemas.formats.WriterCache, made on first use
        self.schema_ids: set[int] = set()

    # ---- public ------------------------------------------------------------------------------
    def decode(self, raw: Batch) -> pl.DataFrame:
        packed = raw.values
        if self.format is None:
            self.format = self._detect(packed.take(range(min(1000, len(packed)))))
            if self.fixed_schema and self.format != "json":
                raise ConfigError(
                    f"{self.topic}: schema= was given for JSON values, but they look like {self.format}",
                    hint="drop schema=, or pass value_format='json' if they are JSON",
                )
        self._reasons = {}
        if self.format == "raw":
            values, good = pl.DataFrame({"value": binary_column(packed)}), None
        elif self.format == "json":
            values, good = self._json(packed)
        elif self.format in ("json_schema", "protobuf"):
            values, good = self._framed_batch(packed)
        else:
            values, good = self._avro_batch(packed)
        if self.value_schema is None:
            self.value_schema = values.schema
        if good is not None:
            self._bad(raw, good)
        return self._with_meta(raw, values, good)

    def meta_name(self, name: str) -> str:
        return f"kafka_{name}" if self.value_schema is not None and name in self.value_schema else name

    def empty_frame(self) -> pl.DataFrame:
        """The frame of an empty range: metadata columns, plus value columns when a schema is known."""
        return self._with_meta(Batch.of(self.topic, 0, []), pl.DataFrame(schema=self.value_schema or {}), None)

    def report(self) -> None:
        if self.bad and self.first_bad is not None:  # set with the first bad record
            p, o, why = self.first_bad
            log.warning(
                "%s: skipped %d undecodable record(s) as %s; first at %s[%d]@%d: %s",
                self.topic,
                self.bad,
                self.format,
                self.topic,
                p,
                o,
                why,
            )

    # ---- formats -----------------------------------------------------------------------------
    def _detect(self, values: list[bytes | None]) -> str:
        sample = [v for v in values[:1000] if v]
        if not sample:
            return "raw"
        kinds = Counter(
            "json" if v.lstrip()[:1] == b"{" else "avro" if v[0] == 0 and len(v) > 5 else "raw" for v in sample
        )
        guess = kinds.most_common(1)[0][0]
        if guess == "avro":
            ids = Counter(int.from_bytes(v[1:5], "big") for v in sample if v[0] == 0 and len(v) > 5)
            guess = self._known_schema(ids.most_common(1)[0][0]) or "raw"
        log.info("%s: value format detected as %s (sample of %d)", self.topic, guess, len(sample))
        return guess

    def _known_schema(self, schema_id: int) -> str | None:
        """The format of writer schema ``schema_id`` (avro, json_schema, protobuf), or None."""
        try:
            from kstream_lab.kafka.schema_registry import SchemaRegistry

            registry = self._avro or SchemaRegistry(self.settings)
            kind = registry.schema(schema_id).schema_type
            self._avro = registry  # kept: the decode asks it again (cached there)
        except Exception as exc:  # unreachable registry or unknown id: not decodable here
            log.info("%s: schema id %d not usable (%s); reading values as raw bytes", self.topic, schema_id, exc)
            return None
        return {"AVRO": "avro", "JSON": "json_schema", "PROTOBUF": "protobuf"}.get(kind)

    def _framed_batch(self, values: PackedValues) -> tuple[pl.DataFrame, list[int] | None]:
        """Confluent JSON Schema or Protobuf through the schemas package's bulk decoders."""
        from kstream_lab.schemas.bulk_formats import decode_json_schema_batch, decode_protobuf_batch
        from kstream_lab.schemas.formats import WriterCache

        if self._avro is None:
            from kstream_lab.kafka.schema_registry import SchemaRegistry

            self._avro = SchemaRegistry(self.settings)
        if self._writers is None:
            self._writers = WriterCache(self._avro)
        decode = decode_protobuf_batch if self.format == "protobuf" else decode_json_schema_batch
        batch = decode(values, self._avro, writers=self._writers)
        self.schema_ids.update(batch.schema_ids)
        if not batch.failures:
            return batch.frame, None
        self._reasons = {f.index: f.reason for f in batch.failures}
        return batch.frame, batch.indices.tolist()

    def _json(self, packed: PackedValues) -> tuple[pl.DataFrame, list[int] | None]:
        if not self.fixed_schema:
            self._grow_schema(packed)
        if not packed.nulls:
            try:
                df = self._read_ndjson(packed.data)  # one value per line already
                if df.height == len(packed):
                    return df, None
            except (pl.exceptions.PolarsError, ValueError):
                pass
        return self._json_slow(packed.values())

    def _grow_schema(self, packed: PackedValues) -> None:
        """Fix the schema from the first batch, then add fields that appear later.

        JSON carries no schema, and reading with a fixed one silently drops unknown fields. The
        first batch is inferred from its first 1,000 records plus a sample spread over it; every
        later batch's keys are checked on 64 values spread over it (json.loads, ~1 % of the decode),
        and new fields are appended with dtypes inferred from that sample, so they are kept from
        this batch on (earlier rows read null). A field rarer than the sample can see is missed.
        """
        spread = packed.spread(64)
        if self.value_schema is None:
            self.value_schema = self._infer([*packed.take(range(min(1000, len(packed)))), *spread])
            return
        keys: set[str] = set()
        for v in spread:
            try:
                obj = json.loads(v)
            except ValueError:
                continue  # the decode reports it
            if isinstance(obj, dict):
                keys.update(obj)
        if keys <= set(self.value_schema):
            return
        found: Mapping[str, pl.DataType] = self._infer(spread) or {}
        new = {name: dtype for name, dtype in found.items() if name not in self.value_schema}
        if new:
            log.info("%s: new JSON field(s) %s from this batch on", self.topic, sorted(new))
            self.value_schema = pl.Schema({**self.value_schema, **new})

    @staticmethod
    def _infer(sample: Sequence[bytes | None]) -> pl.Schema | None:
        lines = [v for v in sample if v]
        if not lines:
            return None
        try:
            return pl.read_ndjson(b"\n".join(lines), infer_schema_length=None).schema
        except (pl.exceptions.PolarsError, ValueError):
            return None  # bad records in the sample: the decode itself reports them

    def _json_slow(self, values: list[bytes | None]) -> tuple[pl.DataFrame, list[int]]:
        """Record-level isolation, only for batches with tombstones, poison or values that do not fit
        the columns: the schemas package's JSON decoder bisects failing chunks down to the bad
        records (dropped, with their reasons); tombstones stay as rows with null fields."""
        present = [i for i, v in enumerate(values) if v is not None]
        tombstones = [i for i, v in enumerate(values) if v is None]
        batch = decode_json_batch([values[i] for i in present], dict(self.value_schema or {}) or None)
        self._reasons = {present[f.index]: f.reason for f in batch.failures}
        decoded = [present[j] for j in batch.indices.tolist()]
        # With a schema the decoder's frame has exactly its columns; with none decoded, an empty one.
        frame = batch.frame if batch.frame.width or not self.value_schema else pl.DataFrame(schema=self.value_schema)
        if not tombstones:
            return frame, decoded
        rows = decoded + tombstones  # the frame's rows, then the tombstones' null rows
        if not frame.width:  # no value columns known yet: the metadata columns carry the rows
            return frame, sorted(rows)
        order = sorted(range(len(rows)), key=rows.__getitem__)
        return pl.concat([frame, pl.DataFrame(schema=frame.schema).clear(len(tombstones))])[order], sorted(rows)

    def _read_ndjson(self, data: bytes) -> pl.DataFrame:
        if self.value_schema is None:
            return pl.read_ndjson(data, infer_schema_length=1000)
        return pl.read_ndjson(data, schema=self.value_schema)

    def _avro_batch(self, values: PackedValues) -> tuple[pl.DataFrame, list[int] | None]:
        """Confluent Avro through the schemas package's bulk decoder (the container trick)."""
        try:
            from kstream_lab.schemas.bulk import decode_avro_batch
        except ImportError:
            raise ConfigError(
                "Avro batch decoding is not available in this build", hint="read with value_format='raw'"
            ) from None
        if self._avro is None:
            from kstream_lab.kafka.schema_registry import SchemaRegistry

            self._avro = SchemaRegistry(self.settings)
        batch = decode_avro_batch(values, self._avro)
        self.schema_ids.update(batch.schema_ids)
        if not batch.failures:
            return batch.frame, None
        self._reasons = {f.index: f.reason for f in batch.failures}
        return batch.frame, batch.indices.tolist()

    # ---- metadata ----------------------------------------------------------------------------
    def _with_meta(self, raw: Batch, values: pl.DataFrame, good: list[int] | None) -> pl.DataFrame:
        """The metadata columns, then the value columns, in one Polars query.

        One ``collect`` rather than a dozen eager calls: every call that releases the GIL must win it
        back from the fetch thread, which holds it most of the time, and each such wait can take up
        to the interpreter's switch interval (5 ms) -- more than building the columns costs.
        """
        offsets, keys, stamps, headers = raw.metadata(good)
        header_col = pl.lit(None, dtype=HEADERS) if headers is None else pl.lit(pl.Series(headers).cast(HEADERS))
        stamp_type = pl.Datetime("ms", "UTC")
        meta = {  # keys or timestamps not extracted (a projected read) are null: the projection drops them
            "topic": pl.lit(self.topic, dtype=pl.String),
            "partition": pl.lit(raw.partition, dtype=pl.Int32),
            "offset": pl.lit(pl.Series(offsets, dtype=pl.Int64)),
            "timestamp": pl.lit(None, dtype=stamp_type)
            if stamps is None
            else pl.lit(pl.Series(stamps, dtype=pl.Int64)).cast(stamp_type),
            "key": pl.lit(None, dtype=pl.String)
            if keys is None
            else pl.lit(pl.Series(keys, dtype=pl.Binary)).cast(pl.String),
            "headers": header_col,
        }
        base = values if values.width else pl.DataFrame({"__rows__": pl.repeat(None, len(offsets), eager=True)})

        def collect() -> pl.DataFrame:
            return base.lazy().select(*[e.alias(self.meta_name(k)) for k, e in meta.items()], *values.columns).collect()

        try:
            return collect()
        except pl.exceptions.PolarsError:  # keys that are not UTF-8: kept readable, never dropped
            listed = pl.Series(keys, dtype=pl.Binary).to_list()
            meta["key"] = pl.lit(
                pl.Series(
                    [k.decode("utf-8", "backslashreplace") if k is not None else None for k in listed], dtype=pl.String
                )
            )
            return collect()

    def _bad(self, raw: Batch, good: list[int]) -> None:
        missing = len(raw) - len(good)
        if not missing:
            return
        good_set = set(good)
        first = next(i for i in range(len(raw)) if i not in good_set)
        where = (raw.partition, int(raw.offsets[first]), self._reasons.get(first, f"not decodable as {self.format}"))
        if self.errors == "raise":
            raise DeserializationError(
                f"value not decodable as {self.format}: {where[2]}",
                topic=self.topic,
                partition=where[0],
                offset=where[1],
                hint="pass errors='skip' to drop such records",
            )
        self.bad += missing
        self.first_bad = self.first_bad or where


def binary_column(packed: PackedValues) -> pl.Series:
    """The values as a Binary column, straight from the packed buffer (nulls stay null)."""
    n = len(packed)
    offsets = np.array([*packed.starts, len(packed.data)], dtype=np.int64)
    validity = None
    if packed.nulls:
        mask = np.ones(n, dtype=bool)
        mask[packed.nulls] = False
        validity = pa.py_buffer(np.packbits(mask, bitorder="little"))
    with_sep = pa.Array.from_buffers(
        pa.large_binary(), n, [validity, pa.py_buffer(offsets), pa.py_buffer(packed.data)], null_count=len(packed.nulls)
    )
    return pl.Series("value", pc.binary_slice(with_sep, 0, -1), dtype=pl.Binary)  # drop each value's separator
