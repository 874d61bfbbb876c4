"""The native loop's columns (no broker): chunk runs and cuts, batch sealing, decoding with Arrow
metadata, configuration passing. The C loop itself runs against the real broker in
tests/integration/replay/test_reader.py (every test on both fetch paths)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from kstream_lab.kafka.native import Chunk, NativeUnavailable, native_config
from kstream_lab.kafka.read.native_loop import ChunkColumns
from kstream_lab.replay.decode import BatchDecoder
from kstream_lab.settings import Settings

HEADER_TYPE = pa.list_(pa.struct([("key", pa.large_string()), ("value", pa.large_binary())]))


def chunk(rows: list[tuple[int, int, bytes | None, bytes | None, list | None]], *, headers: bool = True) -> Chunk:
    """A chunk as kl_fill writes it, from (partition, offset, key, value, headers) rows."""
    values = b"".join((v or b"") + b"\n" for _, _, _, v, _ in rows)
    lens = np.array([-1 if v is None else len(v) for *_, v, _ in rows], np.int32)
    offsets = np.array([o for _, o, *_ in rows], np.int64)
    hdrs = [h for *_, h in rows]
    header_col = pa.array([None if h is None else [{"key": k, "value": v} for k, v in h] for h in hdrs], HEADER_TYPE)
    return Chunk(
        np.frombuffer(values, np.uint8),
        lens,
        np.array([p for p, *_ in rows], np.int32),
        offsets,
        offsets + 1000,
        pa.array([k for _, _, k, _, _ in rows], pa.large_binary()),
        header_col if headers and any(h is not None for h in hdrs) else None,
        headers,
        [],
        "",
    )


ROWS = [
    (0, 5, b"a", b'{"n": 1}', None),
    (0, 6, None, None, [("t", b"x")]),
    (0, 7, b"c", b'{"n": 3}', None),
    (2, 40, b"d", b'{"n": 4}', None),
    (2, 41, b"e", b'{"n": 55}', [("t", None)]),
]


def test_runs_split_a_grouped_chunk_by_partition_without_losing_bytes():
    runs = chunk(ROWS).runs()
    assert [(p, c.offset.tolist()) for p, c in runs] == [(0, [5, 6, 7]), (2, [40, 41])]
    second = runs[1][1]
    assert second.values.tobytes() == b'{"n": 4}\n{"n": 55}\n' and second.keys.to_pylist() == [b"d", b"e"]
    assert second.timestamp.tolist() == [1040, 1041]
    assert second.headers.to_pylist() == [None, [{"key": "t", "value": None}]]
    cut = runs[0][1].slice(0, 2)  # a cut at a range's end inside a chunk
    assert cut.values.tobytes() == b'{"n": 1}\n\n' and cut.value_len.tolist() == [8, -1]


def test_a_sealed_batch_joins_pieces_and_drops_columns_a_piece_lacks():
    columns = ChunkColumns("t", 0)
    columns.add(chunk(ROWS[:2]))
    columns.add(chunk(ROWS[2:3]))  # a piece whose records had no headers at all
    batch = columns.seal()
    assert len(batch) == 3 and batch.offsets.tolist() == [5, 6, 7]
    assert batch.values.values() == [b'{"n": 1}', None, b'{"n": 3}'] and batch.values.nulls == [1]
    assert batch.keys.to_pylist() == [b"a", None, b"c"] and batch.timestamps.tolist() == [1005, 1006, 1007]
    assert batch.headers.to_pylist() == [None, [{"key": "t", "value": b"x"}], None]
    projected = ChunkColumns("t", 0)
    projected.add(chunk(ROWS[:2]))
    projected.add(chunk(ROWS[2:3], headers=False))  # headers turned off midway: dropped for the batch
    sealed = projected.seal()
    assert sealed.headers is None and sealed.keys is not None


def test_decoding_an_array_batch_keeps_rows_and_metadata_of_the_good_records():
    batch = ChunkColumns("t", 0)
    batch.add(
        chunk(
            [(0, 5, b"a", b'{"n": 1}', [("t", b"x")]), (0, 6, b"\xff", b"{bad", None), (0, 7, b"c", b'{"n": 3}', None)]
        )
    )
    frame = BatchDecoder(Settings(), "t", "json").decode(batch.seal())
    assert frame.select("offset", "key", "n").rows() == [(5, "a", 1), (7, "c", 3)]
    assert frame["headers"].to_list() == [[{"key": "t", "value": b"x"}], None]
    assert frame["timestamp"].dt.epoch("ms").to_list() == [1005, 1007]
    odd = ChunkColumns("t", 0)
    odd.add(chunk([(0, 1, b"\xff\xfe", b'{"n": 1}', None)]))  # a key that is not UTF-8 stays readable
    assert BatchDecoder(Settings(), "t", "json").decode(odd.seal())["key"].to_list() == ["\\xff\\xfe"]


def test_native_config_passes_strings_and_refuses_python_objects():
    conf = native_config(
        {"bootstrap.servers": "h:9092", "enable.auto.commit": False, "fetch.queue.backoff.ms": 10, "logger": object()}
    )
    assert conf == {"bootstrap.servers": "h:9092", "enable.auto.commit": "false", "fetch.queue.backoff.ms": "10"}
    with pytest.raises(NativeUnavailable, match="oauth_cb"):
        native_config({"oauth_cb": lambda cfg: ("token", 0.0)})


def test_without_a_compiler_auto_falls_back_and_native_says_why(tmp_path, monkeypatch, caplog):
    from kstream_lab.kafka import native
    from kstream_lab.kafka.read import engine

    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(NativeUnavailable, match="cannot run the C compiler"):
        native.build(tmp_path / "cache")
    auto = Settings(native_cache_dir=tmp_path / "cache")
    with caplog.at_level("INFO", logger="kstream_lab.kafka.read.engine"):
        assert engine._native_consumer(auto, "g", {}) is None
    assert "replay reads through confluent-kafka: cannot run the C compiler" in caplog.text
    with pytest.raises(NativeUnavailable):
        engine._native_consumer(auto.model_copy(update={"replay_fetch": "native"}), "g", {})
    assert engine._native_consumer(auto.model_copy(update={"replay_fetch": "python"}), "g", {}) is None
