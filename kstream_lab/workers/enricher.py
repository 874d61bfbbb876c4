"""The enricher: orders_raw -> orders_enriched with the customer's loyalty tier, exactly once.

Each record goes to the *same partition number* of orders_enriched, in the same order (poison records
aside), so lateness downstream is the lateness the generator's truth computed per orders_raw
partition. Tier lookups are batched per consumed batch through :class:`TierClient`; a failing
customer service degrades records to tier ``unknown`` instead of stalling. Undecodable records, and
records that break :mod:`kstream_lab.workers.order_rules` (oversized, a key that is not UTF-8, a
negative total, an absurd event time), go to orders_dlq with their original bytes, inside the same
transaction as the outputs and the input offsets, so a record is enriched or dead-lettered exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from kstream_lab.errors import RecordError
from kstream_lab.kafka.transactional import ChangelogEntries, Output, Restore
from kstream_lab.observability.metrics import METRICS
from kstream_lab.observability.tracing import child_trace_headers
from kstream_lab.schemas.serde import Decoder, SerdeContext
from kstream_lab.workers.codec import Encoder, require
from kstream_lab.workers.dlq import send_to_dlq
from kstream_lab.workers.order_rules import OrderRules, record_timestamp
from kstream_lab.workers.tiers import TierClient

ORDER_FIELDS = {
    "order_id": str,
    "customer_id": str,
    "total_cents": int,
    "currency": str,
    "item_count": int,
    "timestamp": int,
}


class EnricherProcessor:
    """Stateless transform: decode, look up tiers for the batch, encode, same partition out."""

    def __init__(
        self,
        *,
        decode: Decoder,
        encode: Encoder,
        tiers: TierClient,
        output: str,
        dlq: str,
        rules: OrderRules | None = None,
        service: str = "enricher",
    ) -> None:
        self.decode, self.encode, self.tiers = decode, encode, tiers
        self.output, self.dlq, self.service = output, dlq, service
        self.rules = rules or OrderRules()

    def assign(self, partitions: list[int], restore: Restore) -> None:
        """Stateless: nothing to restore."""

    def revoke(self, partitions: list[int]) -> None:
        """Stateless: nothing to drop."""

    def changelog(self) -> ChangelogEntries:
        return {}

    def process(self, messages: Sequence[Any], out: Output) -> None:
        started = time.time_ns()  # each record's enrich span starts with its batch
        decoded: list[tuple[Any, dict]] = []
        rules = self.rules
        for m in messages:
            ctx = SerdeContext(m.topic(), m.partition(), m.offset(), m.headers())
            try:
                rules.check_envelope(m.key(), m.value(), ctx.where())
                order = self.decode(m.value(), ctx)
                require(order, ORDER_FIELDS, topic=m.topic(), partition=m.partition(), offset=m.offset())
                rules.check_order(order, record_timestamp(m), ctx.where())
            except RecordError as exc:
                self._dead_letter(out, m, exc)
                continue
            decoded.append((m, order))
        tiers = self.tiers.lookup(order["customer_id"] for _, order in decoded)
        for m, order in decoded:
            enriched = {**order, "loyalty_tier": tiers[order["customer_id"]]}
            try:
                value = self.encode(enriched)
            except RecordError as exc:
                self._dead_letter(out, m, exc)
                continue
            headers = child_trace_headers(m.headers(), "enrich", started)
            out.send(self.output, key=m.key(), value=value, partition=m.partition(), headers=headers)

    def _dead_letter(self, out: Output, m: Any, exc: RecordError) -> None:
        METRICS.dlq.labels(self.service).inc()
        send_to_dlq(out, self.dlq, m, exc)
