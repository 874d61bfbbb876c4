"""`kstream-lab backtest`: replay the aggregator's input, re-aggregate, diff against the live finals.

Exit codes for schedules and CI: 0 when every judged window matches, 1 when they differ, 2 on a user
error (bad range, unknown topic, no committed offsets...).
"""

from __future__ import annotations

from pathlib import Path

import typer


def backtest_cmd(
    start: str = typer.Option("earliest", "--from", help="start of the input range (see `replay --help`)"),
    end: str | None = typer.Option(None, "--to", help="end (default: the aggregator's committed offsets)"),
    spec_file: Path | None = typer.Option(None, "--spec", "-P", help="pipeline file (default: KSTREAM_PIPELINE_FILE)"),
    window: str | None = typer.Option(None, "--window", help="what-if window size, e.g. 2m"),
    grace: str | None = typer.Option(None, "--grace", help="what-if grace, e.g. 30s"),
    group_by: str | None = typer.Option(
        None, "--group-by", help="what-if grouping: columns, comma-separated ('' for none)"
    ),
    group: str | None = typer.Option(None, "--group", help="aggregator group id (default: from the pipeline file)"),
    live_topic: str | None = typer.Option(None, "--live-topic", help="default: the aggregator's output topic"),
    source: str | None = typer.Option(None, "--source", help="input topic, or a `replay --out` directory"),
    show: int = typer.Option(20, "--show", min=0, help="mismatching windows to print"),
    out: Path | None = typer.Option(None, "--out", help="write every window with its status as Parquet"),
    event_from: str | None = typer.Option(
        None, "--event-from", help="judge the windows starting at or after this event time (ISO, @ms, '2h ago')"
    ),
    event_to: str | None = typer.Option(None, "--event-to", help="... and before this one (default: now)"),
    sweep: list[str] = typer.Option(
        [], "--sweep", help="grace and/or window sizes over the same read, e.g. grace=0s,10s,30s,2m (repeatable)"
    ),
    dask: str | None = typer.Option(
        None, "--dask", help="Dask scheduler address (tcp://host:8786): one task per partition on its workers"
    ),
) -> None:
    """Back-test the aggregation over [from, to) against the live final windows; exit 0 match, 1 differ."""
    import polars as pl

    from kstream_lab.cli.common import settings
    from kstream_lab.cli.replay import _position
    from kstream_lab.replay.backtest import BacktestRequest, run_backtest

    req = BacktestRequest.build(
        settings(),
        spec=spec_file,
        start=_position(start),
        end=None if end is None else _position(end),
        window=window,
        grace=grace,
        group_by=None if group_by is None else [g for g in group_by.split(",") if g],
        group_id=group,
        live_topic=live_topic,
        source=source,
        cluster=dask,
        sweep=sweep or None,
        event_from=event_from,
        event_to=event_to,
    )
    report = run_backtest(req)
    for line in report.summary():
        typer.echo(line)
    if report.diff.height and show:
        with pl.Config(tbl_rows=show, tbl_cols=-1, tbl_width_chars=200):
            typer.echo(report.diff.head(show))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        report.windows.write_parquet(out)
        typer.echo(f"windows written to {out}")
    raise typer.Exit(0 if report.verdict else 1)
