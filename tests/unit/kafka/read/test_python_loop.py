"""The Python loop's batching: one partition per batch in offset order, ends respected, finished
partitions flushed early -- checked on real confluent_kafka Message objects, without a broker."""

from __future__ import annotations

from confluent_kafka import Message

from kstream_lab.kafka.read.batch import Extract
from kstream_lab.kafka.read.python_loop import MessageColumns, python_loop


class ScriptedConsumer:
    """Hands out prepared chunks from consume(); records pauses."""

    def __init__(self, chunks: list[list[Message]]) -> None:
        self.chunks, self.paused = list(chunks), []

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        return self.chunks.pop(0) if self.chunks else []

    def pause(self, partitions) -> None:
        self.paused += [tp.partition for tp in partitions]


def msg(p: int, o: int) -> Message:
    return Message(
        topic="t", partition=p, offset=o, key=f"k{p}-{o}".encode(), value=f"{p}:{o}".encode(), timestamp=(1, 1000 + o)
    )


def test_batches_hold_one_partition_in_offset_order_and_stop_at_the_ends() -> None:
    chunks = [
        [msg(0, o) for o in range(0, 3)],
        [msg(1, 10), msg(0, 3), msg(1, 11)],  # a mixed chunk is split by partition
        [msg(1, o) for o in range(12, 16)],  # ends at 15: partition 1 is done here
        [msg(0, 4), msg(0, 5), msg(0, 6)],
    ]  # 6 is past partition 0's end (6)
    consumer = ScriptedConsumer(chunks)
    batches = list(python_loop(consumer, "t", {0: 6, 1: 15}, batch_size=4, stall_timeout=5, stop=None))
    got = [(b.partition, b.offsets.tolist()) for b in batches]
    assert got == [(0, [0, 1, 2, 3]), (1, [10, 11, 12, 13, 14]), (0, [4, 5])]  # a chunk is never split
    assert consumer.paused == [1, 0]
    assert batches[0].values.values() == [b"0:0", b"0:1", b"0:2", b"0:3"] and batches[0].timestamps[:2] == [1000, 1001]
    assert batches[1].keys[0] == b"k1-10" and batches[0].headers is None


def test_offset_gaps_tombstones_and_headers_are_kept_exactly() -> None:
    """Transaction markers and compaction leave offset gaps: such runs keep every offset; a run past
    the end is cut by offset, not by position; null values stay null; headers start mid-batch."""
    tomb = Message(topic="t", partition=0, offset=4, key=b"k", value=None, timestamp=(1, 7))
    with_headers = Message(
        topic="t", partition=0, offset=9, key=None, value=b"h", timestamp=(1, 8), headers=[("trace", b"x")]
    )
    chunks = [
        [msg(0, 0), msg(0, 1), msg(0, 3)],  # gap at 2 (a transaction marker)
        [tomb, msg(0, 6), with_headers, msg(0, 12)],
    ]  # gaps; 12 is past the end (10)
    batches = list(python_loop(ScriptedConsumer(chunks), "t", {0: 10}, batch_size=100, stall_timeout=5, stop=None))
    assert len(batches) == 1
    b = batches[0]
    assert b.offsets.tolist() == [0, 1, 3, 4, 6, 9]
    assert b.values.values() == [b"0:0", b"0:1", b"0:3", None, b"0:6", b"h"] and b.values.nulls == [3]
    assert b.keys[3:] == [b"k", b"k0-6", None] and b.timestamps == [1000, 1001, 1003, 7, 1006, 8]
    assert b.headers.to_pylist() == [None, None, None, None, None, [{"key": "trace", "value": b"x"}]]


def test_a_contiguous_run_past_the_end_is_cut_at_the_end() -> None:
    chunks = [[msg(0, o) for o in range(5, 12)]]  # starts at 5, the end is 8
    batches = list(python_loop(ScriptedConsumer(chunks), "t", {0: 8}, batch_size=100, stall_timeout=5, stop=None))
    assert [b.offsets.tolist() for b in batches] == [[5, 6, 7]]
    assert batches[0].values.values() == [b"0:5", b"0:6", b"0:7"]


def test_contiguous_chunks_merge_into_one_run_and_a_jump_starts_another() -> None:
    chunks = [
        [msg(0, o) for o in range(0, 3)],
        [msg(0, o) for o in range(3, 6)],  # continues: one run
        [msg(0, o) for o in range(8, 10)],  # a gap of 2: a new run
        [msg(0, 10), msg(0, 12)],
    ]  # gaps inside: listed
    batches = list(python_loop(ScriptedConsumer(chunks), "t", {0: 13}, batch_size=100, stall_timeout=5, stop=None))
    assert len(batches) == 1
    assert batches[0].runs == [(0, 6), (8, 2), [10, 12]]
    assert batches[0].offsets.tolist() == [0, 1, 2, 3, 4, 5, 8, 9, 10, 12]


def test_a_projected_read_extracts_only_the_metadata_it_shows() -> None:
    from kstream_lab.replay.decode import BatchDecoder
    from kstream_lab.settings import Settings

    chunks = [[msg(0, o) for o in range(0, 3)], [msg(0, o) for o in range(3, 6)]]
    extract = Extract(keys=False, timestamps=False, headers=False)
    [batch] = list(
        python_loop(ScriptedConsumer(chunks), "t", {0: 6}, batch_size=100, stall_timeout=5, stop=None, extract=extract)
    )
    assert batch.keys is None and batch.timestamps is None and batch.headers is None and len(batch) == 6
    assert batch.values.values() == [f"0:{o}".encode() for o in range(6)] and batch.offsets.tolist() == list(range(6))
    frame = BatchDecoder(Settings(), "t", "raw").decode(batch)
    assert frame["key"].null_count() == 6 and frame["timestamp"].null_count() == 6
    assert frame.schema["timestamp"] == fetch_dtype() and frame["offset"].to_list() == list(range(6))


def test_a_column_turned_off_midway_is_dropped_for_the_whole_batch() -> None:
    columns = MessageColumns("t", 0)
    columns.add([msg(0, 0), msg(0, 1)], 0)
    columns.add([msg(0, 2)], 2, Extract(keys=False))
    batch = columns.seal()
    assert batch.keys is None and batch.timestamps == [1000, 1001, 1002] and len(batch) == 3


def fetch_dtype():
    import polars as pl

    return pl.Datetime("ms", "UTC")
