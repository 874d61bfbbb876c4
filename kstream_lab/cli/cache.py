"""`kstream-lab cache ...`: the exact replay cache (kstream_lab/replay/cache.py)."""

from __future__ import annotations

import time

import typer

from kstream_lab.cli.common import settings

app = typer.Typer(no_args_is_help=True, help="List or clear the replay cache (kept decoded ranges).")


@app.command("list")
def list_cmd(topic: str = typer.Argument(None, help="only this topic")) -> None:
    """Kept entries: topic, segments, rows, size, last use (one entry per cluster, topic id and decoding)."""
    from kstream_lab.replay.cache import entries

    s = settings()
    found = [e for e in entries(s) if topic is None or e.topic == topic]
    for e in found:
        used = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.last_used)) if e.last_used else "-"
        fmt = e.key.get("value_format", "?")
        typer.echo(
            f"{e.topic:<40} {fmt:<6} {e.segments:>5} segments {e.rows:>12,} rows {e.bytes / 1e6:>10.1f} MB  {used}"
        )
    total = sum(e.bytes for e in found)
    n, cap = len(found), s.replay_cache_max_bytes / 1e6
    typer.echo(f"{n} entr{'y' if n == 1 else 'ies'}, {total / 1e6:.1f} MB of {cap:.0f} MB")


@app.command()
def clear(topic: str = typer.Argument(None, help="only this topic")) -> None:
    """Remove kept entries (every topic's, or one topic's)."""
    from kstream_lab.replay.cache import clear as clear_entries

    n = clear_entries(settings(), topic)
    typer.echo(f"removed {n} entr{'y' if n == 1 else 'ies'}")
