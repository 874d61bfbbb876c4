"""The public Python API used by notebooks and apps: ``kstream_lab.replay``, ``sql``, ``backtest``...

Every function takes an optional :class:`~kstream_lab.settings.Settings` (default: from the
``KSTREAM_*`` environment) and returns plain Polars objects, so results move on to pandas
(``.to_pandas()``), DuckDB (:func:`to_duckdb`) or Parquet (:func:`to_parquet`) without surprises.
Range rules (inclusive start, exclusive end, snapshotted end) are in ``kstream_lab.replay.reader``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from kstream_lab.replay.frames import referenced_topics, register, run_sql, to_parquet
from kstream_lab.replay.parquet import ExportSummary, export_parquet
from kstream_lab.replay.reader import Position, ReplayRange, replay, resolve_range
from kstream_lab.settings import Settings, get_settings

if TYPE_CHECKING:
    import duckdb

    from kstream_lab.aggregations.spec import AggregationSpec
    from kstream_lab.authoring import Preview
    from kstream_lab.replay.backtest import BacktestReport

__all__ = [
    "aggregation",
    "backtest",
    "export",
    "preview",
    "register",
    "replay",
    "resolve",
    "save_aggregation",
    "sql",
    "to_duckdb",
    "to_parquet",
]


def resolve(
    topic: str,
    start: Position = "earliest",
    end: Position = "latest",
    partitions: list[int] | None = None,
    settings: Settings | None = None,
) -> ReplayRange:
    """Resolve a range to offsets per partition (and snapshot its end) without reading it."""
    return resolve_range(settings or get_settings(), topic, start, end, partitions)


def to_duckdb(
    frame_or_topic: pl.DataFrame | str,
    name: str | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
    *,
    table: bool = False,
    start: Position = "earliest",
    end: Position = "latest",
    settings: Settings | None = None,
    value_format: str = "auto",
) -> duckdb.DuckDBPyConnection:
    """Register a frame (or a replayed topic range) on ``con`` as view/table ``name``; return ``con``."""
    import duckdb

    con = con if con is not None else duckdb.connect()
    if isinstance(frame_or_topic, str):
        frame = replay(frame_or_topic, start, end, value_format=value_format, settings=settings)
        name = name or frame_or_topic
    else:
        frame = frame_or_topic
    if not name:
        raise ValueError("name is required when registering a DataFrame")
    register(con, name, frame, table=table)
    return con


def sql(
    query: str,
    start: Position = "earliest",
    end: Position = "latest",
    con: duckdb.DuckDBPyConnection | None = None,
    settings: Settings | None = None,
    value_format: str = "auto",
) -> pl.DataFrame:
    """Run DuckDB SQL where every topic named in the query is its replayed ``[start, end)`` range.

    ``kstream_lab.sql("select loyalty_tier, sum(total_cents) from orders_enriched group by 1",
    start="1h ago")``. Topic names with dashes need double quotes. With ``con`` the views stay
    registered on it for further queries.
    """
    from kstream_lab.kafka.admin import list_topics

    settings = settings or get_settings()
    topics = referenced_topics(query, list(list_topics(settings)))
    frames = {t: replay(t, start, end, value_format=value_format, settings=settings) for t in topics}
    return run_sql(query, frames, con)


def export(
    topic: str,
    out: str | Path,
    start: Position = "earliest",
    end: Position = "latest",
    partitions: list[int] | None = None,
    value_format: str = "auto",
    settings: Settings | None = None,
    *,
    chunk_rows: int = 500_000,
    progress: bool = True,
    schema: dict | pl.Schema | None = None,
) -> ExportSummary:
    """Write a range larger than memory as partitioned Parquet (see ``kstream_lab.replay.parquet``);
    ``schema`` as for :func:`replay`."""
    settings = settings or get_settings()
    rng = resolve_range(settings, topic, start, end, partitions)
    return export_parquet(
        settings, rng, out, value_format=value_format, chunk_rows=chunk_rows, progress=progress, schema=schema
    )


def backtest(
    start: Position = "earliest",
    end: Position | None = None,
    *,
    spec: AggregationSpec | str | Path | None = None,
    window: str | int | None = None,
    grace: str | int | None = None,
    group_by: list[str] | None = None,
    group_id: str | None = None,
    live_topic: str | None = None,
    source: str | Path | None = None,
    live: pl.DataFrame | None = None,
    settings: Settings | None = None,
    cluster: Any = None,
    sweep: Sequence[str] | Mapping[str, Sequence[str | int]] | None = None,
    what_if: AggregationSpec | None = None,
    event_from: str | int | datetime | None = None,
    event_to: str | int | datetime | None = None,
) -> BacktestReport:
    """Re-run the aggregation over ``orders_enriched`` and compare with the live final windows.

    ``spec``: an AggregationSpec or a pipeline file (default: KSTREAM_PIPELINE_FILE). ``window``/``grace``/
    ``group_by`` add a what-if run (report.what_if). ``source``: a topic, or a directory written by :func:`export`
    (lazy scan, larger than memory). ``cluster``: a Dask scheduler address (``tcp://host:8786``), a
    ``distributed.Client`` or a ``LocalCluster``: one task per topic partition, the same report
    (``kstream_lab.replay.dask_backtest``). ``sweep``: a grid of graces and window sizes over the same
    read, e.g. ``{"grace": ["0s", "10s", "30s"]}`` or ``["grace=0s,10s"]`` (report.sweep.table). ``what_if``:
    any aggregation over the same input (e.g. from :func:`aggregation`), compared like a what-if.
    ``event_from``/``event_to``: judge only the windows starting in that event-time range, reading the
    offsets that decide them (kstream_lab.replay.event_range; an int is epoch ms).
    See ``kstream_lab.replay.backtest`` for what is compared.
    """
    from kstream_lab.replay.backtest import BacktestRequest, run_backtest

    req = BacktestRequest.build(
        settings or get_settings(),
        spec=spec,
        start=start,
        end=end,
        window=window,
        grace=grace,
        group_by=group_by,
        group_id=group_id,
        live_topic=live_topic,
        source=source,
        cluster=cluster,
        sweep=sweep,
        what_if=what_if,
        event_from=event_from,
        event_to=event_to,
    )
    return run_backtest(req, live=live)


def aggregation(
    definition: str | dict[str, Any], *, name: str = "draft", pipeline_file: str | Path | None = None
) -> AggregationSpec:
    """An aggregation from a cell: YAML text (or a dict) with a pipeline file's ``aggregations:`` keys,
    checked against the deployed pipeline (default: KSTREAM_PIPELINE_FILE). See kstream_lab.authoring."""
    from kstream_lab.authoring import aggregation as parse
    from kstream_lab.pipeline_spec import load_pipeline

    return parse(definition, name=name, pipeline=load_pipeline(pipeline_file or get_settings().pipeline_file))


def preview(
    spec: AggregationSpec,
    start: Position = "earliest",
    end: Position = "latest",
    *,
    sweep: Sequence[str] | Mapping[str, Sequence[str | int]] | None = None,
    settings: Settings | None = None,
    cluster: Any = None,
) -> Preview:
    """Run ``spec`` over ``[start, end)`` of its source with the batch engine (every window, its late
    records; ``sweep`` adds graces and window sizes over the same read). No live output needed."""
    from kstream_lab.authoring import preview as run

    return run(settings or get_settings(), spec, start, end, sweep=sweep, cluster=cluster)


def save_aggregation(
    spec: AggregationSpec, out: str | Path, *, pipeline_file: str | Path | None = None, deploy: bool = True
) -> Path:
    """A copy of the deployed pipeline file (default: KSTREAM_PIPELINE_FILE) at ``out`` with ``spec``
    added (and the aggregator pointed at it with ``deploy``), validated by loading it back."""
    from kstream_lab.authoring import save_aggregation as save

    return save(spec, pipeline_file or get_settings().pipeline_file, out, deploy=deploy)
