"""``%load_ext kstream_lab`` in a real IPython shell against the real broker: ``%%ksql`` over a topic
range and over ``table(TOPIC)``, ``%kreplay`` into a variable, and user mistakes as one line."""

from __future__ import annotations

import json

import polars as pl
import pytest

from kstream_lab.kafka.producing import BatchProducer
from kstream_lab.settings import Settings


@pytest.fixture
def shell(kafka_settings: Settings, monkeypatch, tmp_path):
    from IPython.core.interactiveshell import InteractiveShell

    for k, v in {**kafka_settings.kafka_env(), "KSTREAM_DATA_DIR": str(tmp_path), "KSTREAM_REPLAY_CACHE": "1"}.items():
        if v is None:
            monkeypatch.delenv(k, raising=False)
        else:
            monkeypatch.setenv(k, v)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "kstream_lab")
    yield ip
    InteractiveShell.clear_instance()


def test_ksql_kreplay_and_one_line_errors(shell, kafka_settings: Settings, topic_factory, capsys) -> None:
    topic = topic_factory("magic", partitions=2)
    with BatchProducer(kafka_settings) as producer:
        for i in range(100):
            value = {"customer_id": f"C{i % 7}", "total_cents": 100 + i}
            producer.produce(topic, key=f"C{i % 7}".encode(), value=json.dumps(value).encode(), partition=i % 7 % 2)
    query = f'select customer_id, sum(total_cents)::BIGINT as cents, count(*) as n from "{topic}" group by 1 order by 1'
    got = shell.run_cell_magic("ksql", "start=earliest end=latest as=per_customer", query)
    want = {f"C{c}": (sum(100 + i for i in range(100) if i % 7 == c), len(range(c, 100, 7))) for c in range(7)}
    assert isinstance(got, pl.DataFrame) and {r[0]: (r[1], r[2]) for r in got.rows()} == want
    assert shell.user_ns["per_customer"] is got
    latest = shell.run_cell_magic("ksql", "", f"select key, total_cents from table('{topic}') order by key")
    assert latest.rows() == [(f"C{c}", 100 + max(range(c, 100, 7))) for c in range(7)]
    frame = shell.run_line_magic("kreplay", f"{topic} --from 10 --to 20 --as df")
    assert shell.user_ns["df"] is frame and frame.height == 20  # offsets 10..19 of both partitions (58 + 42)
    capsys.readouterr()
    assert shell.run_cell_magic("ksql", "", "select * from no_such_topic_here") is None
    assert shell.run_cell_magic("ksql", "", f'select * frm "{topic}"') is None
    assert shell.run_line_magic("kreplay", f"{topic} --from yesterday-ish") is None
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("error: query failed: Catalog Error: Table with name no_such_topic_here does not exist")
    assert lines[1].startswith("error: query failed: Parser Error: syntax error at or near")
    assert lines[2].startswith("error: not a position: 'yesterday-ish'")
