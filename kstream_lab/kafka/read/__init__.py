"""Bounded reads: the one engine that reads topic ranges to their end (replay, restores, tools, tests).

A read is bounded by ends snapshotted before it starts (``bounds``: under read_committed, the last
stable offset), so producers that keep writing never extend it and an open transaction never makes
it wait. One end rule (``progress``): control records and compaction gaps are skipped, never waited
for; a partition is done when a record at or past ``end - 1`` arrives or EOF at or past ``end`` is
reported. Two loops follow it -- the native one (``native_loop``, the default for columnar reads) and
the confluent-kafka one (``python_loop``) -- with the same batching rules (``batching``), and both
hand out the one :class:`Batch` type. ``read_batches`` is the columnar entry (replay decodes its
batches); ``read_records`` the record-level one (changelog and registry restores, tools, tests).
"""

from kstream_lab.kafka.read.batch import Batch, Extract, Metadata
from kstream_lab.kafka.read.bounds import PartitionBounds, open_transaction_partitions, snapshot_bounds
from kstream_lab.kafka.read.engine import FETCH_TUNING, read_batches
from kstream_lab.kafka.read.records import Record, read_records

__all__ = [
    "FETCH_TUNING",
    "Batch",
    "Extract",
    "Metadata",
    "PartitionBounds",
    "Record",
    "open_transaction_partitions",
    "read_batches",
    "read_records",
    "snapshot_bounds",
]
