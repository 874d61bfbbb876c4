"""IPython magics: SQL over topic ranges and replays into variables, in a notebook cell.

``%load_ext kstream_lab`` registers:

* ``%%ksql [start=...] [end=...] [as=NAME]``: the cell is DuckDB SQL in which every topic the query
  names is a view over its replayed ``[start, end)`` range, and ``table(TOPIC)`` is the topic read as
  a table (latest value per key as of ``end``); the result is a Polars frame (also bound to NAME);
* ``%kreplay TOPIC [--from X] [--to Y] [--as NAME]``: ``kstream_lab.replay`` into a variable
  (default: the topic's name with ``-``/``.`` as ``_``).

Reads go through the replay cache (on in a kernel), so re-running a cell while shaping a query
fetches only offsets that arrived since. A user's mistake (an unknown topic, a bad range, an SQL
error with its position) comes back as one readable line in the cell, not a traceback; anything
else is a bug and raises.
"""

from __future__ import annotations

import re
import shlex
import sys
from typing import Any

import polars as pl

from kstream_lab.errors import KStreamLabError

_TABLE_CALL = re.compile(r"""\btable\(\s*(?:'([^']+)'|"([^"]+)"|([\w.-]+))\s*\)""", re.IGNORECASE)


class MagicUsageError(Exception):
    """A line the magic cannot parse: told as one line, like every user error."""


def parse_options(line: str, allowed: tuple[str, ...]) -> dict[str, str]:
    """``start="1h ago" end=latest`` -> ``{"start": "1h ago", "end": "latest"}``, names checked."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise MagicUsageError(f"cannot parse {line!r}: {exc}") from None
    out: dict[str, str] = {}
    for word in words:
        name, sep, value = word.partition("=")
        if not sep or name not in allowed:
            raise MagicUsageError(f"unknown option {word!r}: use {' '.join(f'{a}=...' for a in allowed)}")
        out[name] = value
    return out


def parse_kreplay(line: str) -> tuple[str, dict[str, str]]:
    """``TOPIC [--from X] [--to Y] [--as NAME]`` -> (topic, {"from": X, "to": Y, "as": NAME})."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise MagicUsageError(f"cannot parse {line!r}: {exc}") from None
    if not words or words[0].startswith("--"):
        raise MagicUsageError("usage: %kreplay TOPIC [--from X] [--to Y] [--as NAME]")
    topic, rest, opts = words[0], words[1:], {}
    while rest:
        flag = rest.pop(0)
        if flag not in ("--from", "--to", "--as") or not rest:
            raise MagicUsageError(f"unexpected {flag!r}: usage: %kreplay TOPIC [--from X] [--to Y] [--as NAME]")
        opts[flag[2:]] = rest.pop(0)
    return topic, opts


def run_ksql(query: str, start: str = "earliest", end: str = "latest", settings: Any = None) -> pl.DataFrame:
    """The ``%%ksql`` cell: topics as views over their ranges, ``table(TOPIC)`` as the topic's table."""
    from kstream_lab.api import sql
    from kstream_lab.replay.table import table

    tables: dict[str, pl.DataFrame] = {}

    def as_view(m: re.Match) -> str:
        topic = next(g for g in m.groups() if g)
        name = "__table_" + re.sub(r"\W", "_", topic)
        if name not in tables:
            tables[name] = table(topic, at=end, settings=settings)
        return name

    rewritten = _TABLE_CALL.sub(as_view, query)
    if not tables:
        return sql(rewritten, start=start, end=end, settings=settings)
    import duckdb

    con = duckdb.connect()
    for name, frame in tables.items():
        con.register(name, frame.to_arrow())
    return sql(rewritten, start=start, end=end, con=con, settings=settings)


def one_line(exc: BaseException) -> str | None:
    """The line a user mistake is told in, None when ``exc`` is not one (then it raises)."""
    import duckdb

    if isinstance(exc, KStreamLabError | MagicUsageError):
        return "error: " + " ".join(str(exc).split())  # duckdb's "LINE 1: ..." and its caret: one line
    if isinstance(exc, duckdb.Error):
        return "SQL error: " + " ".join(str(exc).split())
    return None


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext kstream_lab``: register ``%%ksql`` and ``%kreplay``."""

    def ksql(line: str, cell: str) -> pl.DataFrame | None:
        try:
            opts = parse_options(line, ("start", "end", "as"))
            frame = run_ksql(cell, opts.get("start", "earliest"), opts.get("end", "latest"))
        except Exception as exc:
            _told(exc)
            return None
        if "as" in opts:
            ipython.user_ns[opts["as"]] = frame
        return frame

    def kreplay(line: str) -> pl.DataFrame | None:
        import kstream_lab

        try:
            topic, opts = parse_kreplay(line)
            frame = kstream_lab.replay(topic, start=opts.get("from", "earliest"), end=opts.get("to", "latest"))
        except Exception as exc:
            _told(exc)
            return None
        ipython.user_ns[opts.get("as") or re.sub(r"[-.]", "_", topic)] = frame
        return frame

    ipython.register_magic_function(ksql, magic_kind="cell", magic_name="ksql")
    ipython.register_magic_function(kreplay, magic_kind="line", magic_name="kreplay")


def _told(exc: Exception) -> None:
    line = one_line(exc)
    if line is None:
        raise exc
    print(line, file=sys.stderr)
    return None
