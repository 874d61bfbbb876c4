"""What the enricher checks beyond decoding, so that no order that would harm the aggregation enters
orders_enriched (docs/semantics.md §2.4). Each broken rule is an InvalidRecordError with its own
``reason``, and the record goes to the DLQ with its original bytes:

- ``oversized``: a value over ``max_value_bytes``. An order is about a hundred bytes; one of hundreds
  of kilobytes is garbage or an attack, and its enriched copy (a little longer) could exceed the
  broker's ``max.message.bytes``: the produce would fail, the transaction abort, the batch be
  re-consumed and fail again -- a partition stalled for good. Checked before decoding, which it
  would also slow down.
- ``key_not_utf8``: the key is the order id as text (§2). Bytes that are not UTF-8 cannot be an
  order id; replay and triage show such a key backslash-escaped, so it could never be matched to
  its order again (a re-drive would publish it under another key).
- ``negative_total``: money is integer cents (§1) and an order never pays out; a negative total
  would silently lower a window's sum.
- ``timestamp_too_old`` / ``timestamp_in_future``: the event time is compared with the record's own
  Kafka timestamp (when it was produced), not with the wall clock, so the decision depends on the
  record alone: re-running the enricher over the same orders_raw decides the same way, and
  orders_enriched -- what the aggregator and the back-test both read -- never holds such an order
  (live and back-test stay equal, §5.2). One order stamped in the year 2500 would move its
  partition's watermark (§3.3) there: every open window would close at once and every later order
  of that partition be late for centuries. One stamped 0 (or in seconds instead of milliseconds,
  i.e. January 1970) is not a late order but a wrong one, and would open windows in 1970.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kstream_lab.errors import InvalidRecordError

NO_TIMESTAMP = 0  # the timestamp type of a record without one (librdkafka's TIMESTAMP_NOT_AVAILABLE)
DAY_MS = 86_400_000


@dataclass(frozen=True)
class OrderRules:
    """The limits of pipelines/*.yaml's ``workers.enricher`` (max_value_bytes, max_event_age_ms,
    max_event_lead_ms); a limit of None is not checked."""

    max_value_bytes: int | None = 65_536
    max_event_age_ms: int | None = 7 * DAY_MS
    max_event_lead_ms: int | None = 3_600_000

    def check_envelope(self, key: bytes | None, value: bytes | None, where: Mapping[str, Any]) -> None:
        """The rules on the raw record (before decoding): value size and key encoding."""
        if self.max_value_bytes is not None and value is not None and len(value) > self.max_value_bytes:
            raise InvalidRecordError(
                f"value is {len(value)} bytes, more than max_value_bytes {self.max_value_bytes}",
                reason="oversized",
                **where,
            )
        if key is not None:
            try:
                key.decode()
            except UnicodeDecodeError as exc:
                raise InvalidRecordError(
                    f"key is not UTF-8 (byte 0x{key[exc.start]:02x} at position {exc.start}); keys are order ids",
                    reason="key_not_utf8",
                    **where,
                ) from None

    def check_order(self, order: Mapping[str, Any], record_ts: int | None, where: Mapping[str, Any]) -> None:
        """The rules on the decoded order (its fields already type-checked): total and event time.

        ``record_ts`` is the Kafka record's timestamp in ms, None when it has none (then the event
        time is not checked).
        """
        total = order["total_cents"]
        if total < 0:
            raise InvalidRecordError(
                f"field 'total_cents' is {total}, a negative total", reason="negative_total", **where
            )
        if record_ts is None:
            return
        ts = order["timestamp"]
        if self.max_event_age_ms is not None and ts < record_ts - self.max_event_age_ms:
            raise InvalidRecordError(
                f"field 'timestamp' is {ts}, {_days(record_ts - ts)} before the record was produced "
                f"({record_ts}); max_event_age_ms is {self.max_event_age_ms}",
                reason="timestamp_too_old",
                **where,
            )
        if self.max_event_lead_ms is not None and ts > record_ts + self.max_event_lead_ms:
            raise InvalidRecordError(
                f"field 'timestamp' is {ts}, {_days(ts - record_ts)} after the record was produced "
                f"({record_ts}); max_event_lead_ms is {self.max_event_lead_ms}",
                reason="timestamp_in_future",
                **where,
            )


def record_timestamp(message: Any) -> int | None:
    """The consumed record's timestamp in ms (create or log-append time), None when it has none."""
    ts_type, ts = message.timestamp()
    return None if ts_type == NO_TIMESTAMP or ts < 0 else int(ts)


def _days(ms: int) -> str:
    return f"{ms / DAY_MS:,.1f} days"
