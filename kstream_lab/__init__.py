"""kstream_lab: live Kafka pipelines, exact replay and back-tests.

The public API is loaded lazily so ``import kstream_lab.settings`` (every worker and CLI command)
does not pay for Polars and DuckDB:

    import kstream_lab
    df = kstream_lab.replay("orders_enriched", start="15m ago")        # -> polars.DataFrame
    kstream_lab.sql("select loyalty_tier, sum(total_cents) from orders_enriched group by 1", start="1h ago")
    report = kstream_lab.backtest()                                      # report.verdict, report.diff
    customers = kstream_lab.table("customers", at="1h ago")             # latest value per key (a KTable)
    live = kstream_lab.tail("orders_enriched", max_seconds=10)          # new records as they arrive
"""

from __future__ import annotations

from importlib import import_module

_API = (
    "aggregation",
    "backtest",
    "export",
    "preview",
    "register",
    "resolve",
    "save_aggregation",
    "sql",
    "to_duckdb",
    "to_parquet",
)

__all__ = ["readable", "replay", "table", "tail", *_API]


def load_ipython_extension(ipython) -> None:
    """``%load_ext kstream_lab``: the ``%%ksql`` and ``%kreplay`` magics (kstream_lab/magics.py)."""
    import_module("kstream_lab.magics").load_ipython_extension(ipython)


def __getattr__(name: str):
    if name == "replay":  # the subpackage, which is callable (see kstream_lab/replay/__init__.py)
        return import_module("kstream_lab.replay")
    if name == "readable":
        return import_module("kstream_lab.display").readable
    if name == "table":
        return import_module("kstream_lab.replay.table").table
    if name == "tail":
        return import_module("kstream_lab.replay.tail").tail
    if name in _API:
        return getattr(import_module("kstream_lab.api"), name)
    raise AttributeError(f"module 'kstream_lab' has no attribute {name!r}")
