"""The fetch loop's batching: one partition per batch in offset order, ends respected, finished
partitions flushed early -- checked on real confluent_kafka Message objects, without a broker."""

from __future__ import annotations

from confluent_kafka import Message

from kstream_lab.kafka import fetch


class ScriptedConsumer:
    """Hands out prepared chunks from consume(); records pauses."""

    def __init__(self, chunks: list[list[Message]]) -> None:
        self.chunks, self.paused = list(chunks), []

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        return self.chunks.pop(0) if self.chunks else []

    def pause(self, partitions) -> None:
        self.paused += [tp.partition for tp in partitions]


def msg(p: int, o: int) -> Message:
    return Message(topic="t", partition=p, offset=o, key=f"k{p}-{o}".encode(), value=f"{p}:{o}".encode(),
                   timestamp=(1, 1000 + o))


def test_batches_hold_one_partition_in_offset_order_and_stop_at_the_ends() -> None:
    chunks = [[msg(0, o) for o in range(0, 3)],
              [msg(1, 10), msg(0, 3), msg(1, 11)],                # a mixed chunk is split by partition
              [msg(1, o) for o in range(12, 16)],                 # ends at 15: partition 1 is done here
              [msg(0, 4), msg(0, 5), msg(0, 6)]]                  # 6 is past partition 0's end (6)
    consumer = ScriptedConsumer(chunks)
    batches = list(fetch._fetch_loop(consumer, "t", {0: 6, 1: 15}, batch_size=4, stall_timeout=5, stop=None))
    got = [(b.partitions[0], b.offsets) for b in batches]
    assert all(len(set(b.partitions)) == 1 for b in batches)
    assert got == [(0, [0, 1, 2, 3]), (1, [10, 11, 12, 13, 14]), (0, [4, 5])]  # a chunk is never split
    assert consumer.paused == [1, 0]
    assert batches[0].values[:2] == [b"0:0", b"0:1"] and batches[0].timestamps[:2] == [1000, 1001]
    assert batches[1].keys[0] == b"k1-10" and batches[0].headers is None
