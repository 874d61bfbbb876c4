"""The windowed aggregator: orders_enriched -> sales_aggregates (+ orders_late, changelog), exactly once.

All window logic is :class:`kstream_lab.aggregations.fold.PartitionWindows`, the same engine the
back-test's parity test checks against the batch plan. This module only feeds it records in offset
order, turns its steps into records and hands its changelog entries to the transactional loop, which
commits outputs, changelog and input offsets in one transaction (DESIGN.md sections 3-4).

Within one batch, successive updates of the same window are coalesced to the last one (as Kafka
Streams' record cache does): downstream sees fewer, never different, results; ``final=true`` is
emitted exactly once per window, before any later update could be.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from kstream_lab.aggregations.fold import PartitionWindows, WindowResult
from kstream_lab.aggregations.spec import AggregationSpec
from kstream_lab.errors import RecordError
from kstream_lab.kafka.transactional import ChangelogEntries, Output, Restore
from kstream_lab.observability.metrics import METRICS
from kstream_lab.observability.tracing import child_trace_headers
from kstream_lab.workers.codec import Decoder, Encoder, require
from kstream_lab.workers.dlq import send_to_dlq

log = logging.getLogger(__name__)


class AggregatorProcessor:
    """Per-partition window state fed by the transactional loop."""

    def __init__(self, spec: AggregationSpec, *, decode: Decoder, encode_aggregate: Encoder, output: str,
                 late: str, dlq: str, group_columns: dict[str, str] | None = None,
                 service: str = "aggregator") -> None:
        self.spec, self.decode, self.encode_aggregate = spec, decode, encode_aggregate
        self.output, self.late, self.dlq, self.service = output, late, dlq, service
        self.group_columns = group_columns or {}
        self.states: dict[int, PartitionWindows] = {}
        self._types: dict[str, Any] = {spec.time_field: int}
        self._types.update({m.field: int for m in spec.metrics.values() if m.field})

    # ---- state lifecycle -----------------------------------------------------------------------
    def assign(self, partitions: list[int], restore: Restore) -> None:
        entries = restore(partitions)
        for p in partitions:
            self.states[p] = PartitionWindows.restore(self.spec, p, entries.get(p, []))
            log.info("restored partition %d: %d open windows, watermark %s", p, len(self.states[p].windows),
                     self.states[p].watermark, extra={"partition": p})

    def revoke(self, partitions: list[int]) -> None:
        for p in partitions:
            self.states.pop(p, None)

    def changelog(self) -> ChangelogEntries:
        out = {}
        for p, state in self.states.items():
            entries = state.changelog_entries()
            if entries:
                out[p] = entries
        return out

    # ---- records -------------------------------------------------------------------------------
    def process(self, messages: Sequence[Any], out: Output) -> None:
        pending: dict[tuple, tuple[WindowResult, Any]] = {}
        late = 0
        decode, states, types = self.decode, self.states, self._types  # hot loop: ~20 us per record
        for m in messages:
            p = m.partition()
            try:
                record = decode(m.value(), m.topic(), p, m.offset())
                if any(type(record.get(f)) is not int for f in types):
                    require(record, types, topic=m.topic(), partition=p, offset=m.offset())
            except RecordError as exc:
                METRICS.dlq.labels(self.service).inc()
                send_to_dlq(out, self.dlq, m, exc)
                continue
            step = states[p].process(record)
            if step.late:
                late += 1
                out.send(self.late, key=m.key(), value=m.value(), partition=p,
                         headers=child_trace_headers(m.headers()))
                continue
            upd = step.update
            pending[(p, upd.window_start, upd.group)] = (upd, m)
            for closed in step.closed:
                pending.pop((p, closed.window_start, closed.group), None)
                self._emit(out, closed, m)
        for result, m in pending.values():
            self._emit(out, result, m)
        if late:
            METRICS.late.labels(self.service).inc(late)

    def aggregate_record(self, result: WindowResult) -> dict:
        """The SalesAggregate value: group columns renamed (loyalty_tier -> tier), metrics, final flag."""
        row = result.as_row(self.spec)
        return {self.group_columns.get(k, k): v for k, v in row.items()}

    def _emit(self, out: Output, result: WindowResult, trigger: Any) -> None:
        value = self.aggregate_record(result)
        group = ":".join("" if g is None else str(g) for g in result.group)
        key = f"{result.window_start}:{group}:{result.source_partition}".encode()
        out.send(self.output, key=key, value=self.encode_aggregate(value), partition=result.source_partition,
                 headers=child_trace_headers(trigger.headers()))
