"""Triage of records that did not make it: dead letters, late events, and re-driving fixed records."""

from kstream_lab.triage.dlq import dead_letters, dlq_summary, late_events
from kstream_lab.triage.redrive import redrive

__all__ = ["dead_letters", "dlq_summary", "late_events", "redrive"]
