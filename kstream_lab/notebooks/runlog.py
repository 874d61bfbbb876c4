"""The run log: one DuckDB table under the data dir with every notebook run.

Connections are opened per operation and closed at once: DuckDB allows one writing process per
file, and the scheduler, the CLI and notebooks must all be able to record and list runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kstream_lab.settings import Settings
from kstream_lab.sinks.duckdb import with_connection

T = TypeVar("T")

DDL = """
create table if not exists notebook_runs (
    run_id       varchar primary key,
    notebook     varchar not null,
    job          varchar,
    parameters   json,
    started_at   timestamptz not null,
    duration_s   double,
    status       varchar not null,   -- running | succeeded | failed | skipped
    error        varchar,
    output_ipynb varchar,
    output_html  varchar,
    lineage      json,
    git_commit   varchar
)
"""


@dataclass
class RunRecord:
    run_id: str
    notebook: str
    parameters: dict
    started_at: float
    status: str = "running"
    job: str | None = None
    duration_s: float | None = None
    error: str | None = None
    output_ipynb: str | None = None
    output_html: str | None = None
    lineage: dict | None = None
    git_commit: str | None = None


def db_path(settings: Settings) -> Path:
    return settings.data_dir / "notebook_runs.duckdb"


def _run(settings: Settings, fn: Callable[[Any], T], *, write: bool = False) -> T:
    """Run ``fn(conn)`` on a short connection; create the table first if needed."""
    path = db_path(settings)
    if write or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)

        def ddl_then(conn: Any) -> T:
            conn.execute(DDL)
            return fn(conn)

        return with_connection(path, ddl_then, read_only=False)
    return with_connection(path, fn, read_only=True)


def save(settings: Settings, run: RunRecord) -> None:
    row = [
        run.run_id,
        run.notebook,
        run.job,
        json.dumps(run.parameters),
        run.started_at,
        run.duration_s,
        run.status,
        run.error,
        run.output_ipynb,
        run.output_html,
        json.dumps(run.lineage) if run.lineage is not None else None,
        run.git_commit,
    ]
    _run(
        settings,
        lambda c: c.execute(
            "insert or replace into notebook_runs values (?, ?, ?, ?, to_timestamp(?), ?, ?, ?, ?, ?, ?, ?)", row
        ),
        write=True,
    )


def list_runs(settings: Settings, *, notebook: str | None = None, job: str | None = None, limit: int = 50):
    """Runs, newest first, as a Polars frame."""
    where, args = [], []
    if notebook:
        where.append("notebook = ?")
        args.append(notebook)
    if job:
        where.append("job = ?")
        args.append(job)
    sql = "select * from notebook_runs" + (f" where {' and '.join(where)}" if where else "")
    return _run(settings, lambda c: c.sql(sql + " order by started_at desc limit ?", params=[*args, limit]).pl())


def get_run(settings: Settings, run_id: str) -> dict | None:
    rows = _run(settings, lambda c: c.sql("select * from notebook_runs where run_id = ?", params=[run_id]).pl())
    return rows.to_dicts()[0] if rows.height else None


def last_started(settings: Settings, job: str) -> float | None:
    """Epoch seconds of the job's most recent run (any status), for the misfire policy."""
    runs = list_runs(settings, job=job, limit=1)
    if not runs.height:
        return None
    return runs["started_at"][0].timestamp()
