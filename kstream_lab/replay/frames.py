"""Handing replayed frames to DuckDB, pandas and Parquet, and SQL over topic ranges.

DuckDB gets the frame's Arrow buffers (``register`` is zero-copy; ``table=True`` copies into a
DuckDB table that outlives the frame). ``sql`` is the notebook shortcut: every topic the query
names is replayed over the same range and registered as a view under its own name, then the query
runs on the connection.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from kstream_lab.errors import KStreamLabError

if TYPE_CHECKING:  # DuckDB loads on first use: a replay into Polars should not pay for it
    import duckdb


def register(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame, *, table: bool = False) -> None:
    """Make ``frame`` queryable as ``name`` on ``con``: a view over its Arrow data, or a copied table."""
    arrow = frame.to_arrow()
    if not table:
        con.register(name, arrow)
        return
    tmp = f"__kstream_lab_{abs(hash(name))}"
    con.register(tmp, arrow)
    try:
        con.execute(f'CREATE OR REPLACE TABLE "{_ident(name)}" AS SELECT * FROM "{tmp}"').fetchall()
    finally:
        con.unregister(tmp)


def to_parquet(frame: pl.DataFrame, path: str | Path, *, partition_by: str | None = None) -> Path:
    """Write one file, or a directory with one subdirectory per value of ``partition_by``."""
    path = Path(path)
    if partition_by is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(path)
    else:
        path.mkdir(parents=True, exist_ok=True)
        for (value,), part in frame.partition_by(partition_by, as_dict=True, maintain_order=True).items():
            sub = path / f"{partition_by}-{value}"
            sub.mkdir(exist_ok=True)
            part.write_parquet(sub / "part-0.parquet")
    return path


def referenced_topics(query: str, topics: list[str]) -> list[str]:
    """Topics whose name appears in the query as a table name (bare or double-quoted)."""
    found = []
    for t in topics:
        pattern = rf'(?<![\w."-])("{re.escape(t)}"|{re.escape(t)})(?![\w"-])'
        if re.search(pattern, query):
            found.append(t)
    return found


def run_sql(query: str, frames: dict[str, pl.DataFrame], con: duckdb.DuckDBPyConnection | None = None) -> pl.DataFrame:
    """Register the frames as views on ``con`` (a fresh in-memory DuckDB by default) and run the query."""
    import duckdb

    con = con if con is not None else duckdb.connect()
    for name, frame in frames.items():
        register(con, name, frame)
    try:
        return con.sql(query).pl()
    except duckdb.Error as exc:
        raise KStreamLabError(f"query failed: {exc}", hint=f"registered views: {', '.join(frames) or 'none'}") from None


def _ident(name: str) -> str:
    return name.replace('"', '""')
