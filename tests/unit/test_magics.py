"""The IPython magics' parsing and their one-line errors, without a broker."""

from __future__ import annotations

import pytest

from kstream_lab.errors import TopicError
from kstream_lab.magics import MagicUsageError, load_ipython_extension, one_line, parse_kreplay, parse_options

pytestmark = pytest.mark.unit


def test_options_and_kreplay_lines_parse() -> None:
    assert parse_options('start="1h ago" end=latest', ("start", "end", "as")) == {"start": "1h ago", "end": "latest"}
    assert parse_options("", ("start",)) == {}
    with pytest.raises(MagicUsageError, match="unknown option 'begin=0': use start=... end=..."):
        parse_options("begin=0", ("start", "end"))
    assert parse_kreplay('orders_enriched --from "15m ago" --as df') == (
        "orders_enriched",
        {"from": "15m ago", "as": "df"},
    )
    for bad in ("", "--from 0", "t --from", "t --limit 3"):
        with pytest.raises(MagicUsageError):
            parse_kreplay(bad)


def test_user_mistakes_are_one_line_and_bugs_raise(capsys) -> None:
    assert one_line(TopicError("topic 'nope' does not exist", hint="kstream-lab topics list")) == (
        "error: topic 'nope' does not exist (kstream-lab topics list)"
    )
    import duckdb

    try:
        duckdb.sql("select * frm t")
    except duckdb.Error as exc:
        line = one_line(exc)
    assert line is not None and line.startswith("SQL error: Parser Error: syntax error at or near") and "\n" not in line
    assert one_line(ZeroDivisionError()) is None

    class Shell:
        user_ns: dict = {}
        magics: dict = {}

        def register_magic_function(self, fn, magic_kind, magic_name):
            self.magics[(magic_kind, magic_name)] = fn

    shell = Shell()
    load_ipython_extension(shell)
    assert set(shell.magics) == {("cell", "ksql"), ("line", "kreplay")}
    assert shell.magics[("line", "kreplay")]("--to 5") is None
    assert capsys.readouterr().err == "error: usage: %kreplay TOPIC [--from X] [--to Y] [--as NAME]\n"
