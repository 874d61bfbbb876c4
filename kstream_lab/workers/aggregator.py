"""The windowed aggregator: orders_enriched -> sales_aggregates (+ orders_late, changelog), exactly once.

All window logic is :class:`kstream_lab.aggregations.fold.PartitionWindows`, the same engine the
back-test's parity test checks against the batch plan. This module only feeds it records in offset
order, turns its steps into records and hands its changelog entries to the transactional loop, which
commits outputs, changelog and input offsets in one transaction (docs/semantics.md §3-4).

A batch is decoded column-wise (Avro in bulk) and each partition's run of it is folded in one call.
Within one batch, successive updates of the same window are coalesced to the last one (as Kafka
Streams' record cache does): downstream sees fewer, never different, results; ``final=true`` is
emitted exactly once per window, before any later update could be.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from kstream_lab.aggregations.fold import PartitionWindows, WindowResult, metric_columns
from kstream_lab.aggregations.inputs import compile_inputs, evaluate_columns
from kstream_lab.aggregations.spec import INTEGER_OPS, AggregationSpec
from kstream_lab.errors import StateError
from kstream_lab.kafka.transactional import ChangelogEntries, Output, Restore
from kstream_lab.observability.metrics import METRICS
from kstream_lab.observability.tracing import child_trace_headers
from kstream_lab.workers.codec import ColumnDecoder, Columns, Encoder
from kstream_lab.workers.dlq import send_to_dlq

log = logging.getLogger(__name__)


class AggregatorProcessor:
    """Per-partition window state fed by the transactional loop."""

    def __init__(
        self,
        spec: AggregationSpec,
        *,
        decode: ColumnDecoder,
        encode_aggregate: Encoder,
        output: str,
        late: str,
        dlq: str,
        group_columns: dict[str, str] | None = None,
        changelog: str = "changelog",
        service: str = "aggregator",
    ) -> None:
        """``decode`` must return the spec's time field and metric fields (required integers) and its
        group-by fields: see :meth:`fields`. ``changelog`` names the state's topic in errors."""
        self.spec, self.decode_columns, self.encode_aggregate = spec, decode, encode_aggregate
        self.changelog_topic = changelog
        self.output, self.late, self.dlq, self.service = output, late, dlq, service
        self.group_columns = group_columns or {}
        self.states: dict[int, PartitionWindows] = {}
        self._metric_fields = metric_columns(spec)
        self._inputs = compile_inputs(spec)  # the filter and derived fields, compiled once
        self._started = 0  # time.time_ns() when the batch in hand started (its outputs' spans start there)

    @staticmethod
    def fields(spec: AggregationSpec) -> tuple[list[str], list[str]]:
        """(required integer fields, other fields) the aggregation reads from each record.

        Required: the time field and the record fields integer metrics read (derived ones are
        computed, not read); the others (group fields, count_distinct fields, the expressions'
        inputs) may be null."""
        derived = spec.derived
        metric_ints = [m.field for m in spec.metrics.values() if m.field and m.op in INTEGER_OPS]
        ints = list(dict.fromkeys([spec.time_field, *sorted(f for f in metric_ints if f not in derived)]))
        return ints, [f for f in compile_inputs(spec).source_fields if f not in ints]

    # ---- state lifecycle -----------------------------------------------------------------------
    def assign(self, partitions: list[int], restore: Restore) -> None:
        entries = restore(partitions)
        for p in partitions:
            try:
                self.states[p] = PartitionWindows.restore(self.spec, p, entries.get(p, []))
            except StateError as exc:  # stop before anything is processed: see StateError
                raise StateError(f"{self.changelog_topic}: {exc.message}", hint=exc.hint) from None
            log.info(
                "restored partition %d: %d open windows, watermark %s",
                p,
                len(self.states[p].windows),
                self.states[p].watermark,
                extra={"partition": p},
            )

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
        """Decode the batch column-wise, dead-letter what does not decode, fold each partition's run.

        Per partition, in offset order: windows the run closed go out as they closed (final=true),
        then one update per window the run changed that is still open.
        """
        self._started = time.time_ns()  # the batch's start: where each output's aggregate span starts
        parts, offsets = [m.partition() for m in messages], [m.offset() for m in messages]
        topic = messages[0].topic() if messages else ""
        decoded = self.decode_columns([m.value() for m in messages], topic, parts, offsets)
        for i, exc in sorted(decoded.errors.items()):
            METRICS.dlq.labels(self.service).inc()
            send_to_dlq(out, self.dlq, messages[i], exc)
        keep = None
        if not self._inputs.trivial:  # filter and derived fields: vectorised over the whole batch
            decoded.columns, keep = evaluate_columns(self._inputs, decoded.columns, len(decoded.rows))
        runs: dict[int, list[int]] = {}
        for j, i in enumerate(decoded.rows):
            runs.setdefault(parts[i], []).append(j)
        late = 0
        for p, run in runs.items():
            late += self._fold_run(p, run, decoded, messages, out, keep)
        if late:
            METRICS.late.labels(self.service).inc(late)

    def _fold_run(
        self,
        partition: int,
        run: list[int],
        decoded: Columns,
        messages: Sequence[Any],
        out: Output,
        keep: list[bool] | None = None,
    ) -> int:
        """Fold one partition's rows (positions into ``decoded``); return how many were late."""
        spec, cols = self.spec, decoded.columns
        whole = len(run) == len(decoded.rows)
        pick = (lambda c: c) if whole else (lambda c: [c[j] for j in run])
        group_cols = [pick(cols[g]) for g in spec.group_by]
        groups = list(zip(*group_cols, strict=True)) if group_cols else [()] * len(run)
        steps = self.states[partition].process_columns(
            pick(cols[spec.time_field]),
            groups,
            {f: pick(cols[f]) for f in self._metric_fields},
            None if keep is None else pick(keep),
        )
        source = [decoded.rows[j] for j in run]  # run position -> message index
        for k in steps.late:
            m = messages[source[k]]
            out.send(
                self.late,
                key=m.key(),
                value=m.value(),
                partition=partition,
                headers=child_trace_headers(m.headers(), "late", self._started),
            )
        for k, result in steps.closed + steps.updated:
            self._emit(out, result, messages[source[k]])
        return len(steps.late)

    def aggregate_record(self, result: WindowResult) -> dict:
        """The SalesAggregate value: group columns renamed (loyalty_tier -> tier), metrics, final flag."""
        row = result.as_row(self.spec)
        return {self.group_columns.get(k, k): v for k, v in row.items()}

    def _emit(self, out: Output, result: WindowResult, trigger: Any) -> None:
        value = self.aggregate_record(result)
        group = ":".join("" if g is None else str(g) for g in result.group)
        key = f"{result.window_start}:{group}:{result.source_partition}".encode()
        out.send(
            self.output,
            key=key,
            value=self.encode_aggregate(value),
            partition=result.source_partition,
            headers=child_trace_headers(trigger.headers(), "aggregate", self._started),
        )
