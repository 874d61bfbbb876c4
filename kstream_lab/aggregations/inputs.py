"""The aggregation's inputs: ``filter:`` and derived ``fields:`` compiled once, evaluated per batch.

docs/semantics.md §7.5. Both engines prepare their input here, so they see identical values: the
live aggregator evaluates the compiled expressions vectorised over each consumed batch
(:func:`evaluate_columns`), the back-test over its frame (:meth:`CompiledInputs.prepare`). The
expressions are SQL (``polars.sql_expr``); a derived field may use the fields declared before it.
Fields that integer metrics read are cast to 64-bit integers (``strict=False``: a value that is not
one becomes null, skipped like every null) in both engines alike; the filter's null counts as false.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from kstream_lab.aggregations.spec import INTEGER_OPS, AggregationSpec

KEEP = "__keep__"


class ExpressionError(ValueError):
    """A filter or derived field that does not compile; ``key`` is its key path in the spec."""

    def __init__(self, key: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class CompiledInputs:
    spec: AggregationSpec
    fields: tuple[tuple[str, pl.Expr], ...]
    filter: pl.Expr | None
    #: the record fields the aggregation reads: time field, group_by, metric fields, expressions' inputs
    source_fields: tuple[str, ...]
    #: fields integer metrics read (cast to Int64 after the derived fields are computed)
    integer_fields: tuple[str, ...]

    @property
    def trivial(self) -> bool:
        """No filter and no derived fields: the input is used as decoded (the v1 path)."""
        return self.filter is None and not self.fields

    def prepare(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        """Derived columns, integer casts and the filter's result as the boolean column ``KEEP``."""
        for name, expr in self.fields:
            frame = frame.with_columns(expr.alias(name))
        casts = [pl.col(f).cast(pl.Int64, strict=False) for f in self.integer_fields]
        keep = pl.lit(True) if self.filter is None else self.filter.fill_null(False).cast(pl.Boolean)
        return frame.with_columns(*casts, keep.alias(KEEP))


def compile_inputs(spec: AggregationSpec) -> CompiledInputs:
    """Compile the spec's expressions once (cached per spec); ExpressionError names the bad key."""
    key = spec.model_dump_json()
    compiled = _CACHE.get(key)
    if compiled is None:
        compiled = _CACHE[key] = _compile(spec)
    return compiled


_CACHE: dict[str, CompiledInputs] = {}


def _compile(spec: AggregationSpec) -> CompiledInputs:
    fields: list[tuple[str, pl.Expr]] = []
    roots: list[str] = []
    for name, sql in spec.fields.items():
        expr = _sql(("fields", name), sql)
        roots += [r for r in expr.meta.root_names() if r not in {n for n, _ in fields}]
        fields.append((name, expr))
    flt = _sql(("filter",), spec.filter) if spec.filter is not None else None
    derived = set(spec.fields)
    if flt is not None:
        roots += [r for r in flt.meta.root_names() if r not in derived]
    metric_fields = [m.field for m in spec.metrics.values() if m.field]
    direct = [spec.time_field, *spec.group_by, *metric_fields]
    source = [f for f in dict.fromkeys([*direct, *roots]) if f not in derived]
    ints = [m.field for m in spec.metrics.values() if m.field and m.op in INTEGER_OPS]
    return CompiledInputs(spec, tuple(fields), flt, tuple(source), tuple(dict.fromkeys(ints)))


def _sql(key: tuple[str, ...], sql: str) -> pl.Expr:
    try:
        expr = pl.sql_expr(sql)
    except pl.exceptions.PolarsError as exc:
        raise ExpressionError(key, f"not a SQL expression polars can compile: {exc}") from None
    # An expression must be evaluable row by row (no aggregate such as sum(x) over the whole batch,
    # which would make the result depend on how the stream is cut into batches).
    try:
        pl.DataFrame({r: [None] for r in expr.meta.root_names()}).lazy().select(expr).collect_schema()
    except pl.exceptions.PolarsError as exc:
        raise ExpressionError(key, f"cannot evaluate {sql!r}: {exc}") from None
    if _aggregates(expr):
        raise ExpressionError(key, f"{sql!r} aggregates over rows; use a per-record expression")
    return expr


def _aggregates(expr: pl.Expr) -> bool:
    """True when ``expr`` returns one value for many rows (sum, count, ...)."""
    roots = expr.meta.root_names()
    frame = pl.DataFrame({r: [1, 2] for r in roots}) if roots else pl.DataFrame({"__n": [1, 2]})
    try:
        return frame.select(expr).height != 2
    except pl.exceptions.PolarsError:
        return False  # a type error on the probe values says nothing about the shape


def evaluate_columns(
    compiled: CompiledInputs, columns: Mapping[str, Sequence[Any]], rows: int
) -> tuple[dict[str, list[Any]], list[bool] | None]:
    """The live side: one batch's decoded columns -> (columns with derived fields, keep mask or None).

    Vectorised over the batch (one Polars frame per call, not per record)."""
    if compiled.trivial:  # the decoder already checked the integer fields: nothing to compute
        return {k: list(v) for k, v in columns.items()}, None
    frame = pl.DataFrame({k: list(v) for k, v in columns.items()}, strict=False) if columns else None
    if frame is None or frame.width == 0:
        frame = pl.DataFrame({"__n": [None] * rows})
    out = compiled.prepare(frame.lazy()).collect()
    wanted = {*columns, *(n for n, _ in compiled.fields)}
    cols = {c: out[c].to_list() for c in out.columns if c in wanted}
    keep = None if compiled.filter is None else out[KEEP].to_list()
    return cols, keep
