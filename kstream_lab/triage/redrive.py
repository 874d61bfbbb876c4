"""Re-driving dead letters to their source topic, at most once each.

A re-drive writes the (optionally fixed) record back to ``source.topic`` with a header naming the
dead letter it came from, and writes the same id to a compacted ledger topic -- both in one Kafka
transaction, so either both happen or neither. Before writing, the ledger is read (read_committed):
a record already in it is never re-driven again. Dry run is the default: it only reports.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import polars as pl

from kstream_lab.api import replay
from kstream_lab.errors import ConfigError
from kstream_lab.kafka.admin import list_topics
from kstream_lab.kafka.producing import publish_atomically
from kstream_lab.kafka.topics import apply_topics
from kstream_lab.pipeline_spec import TopicSpec
from kstream_lab.settings import Settings, get_settings

LEDGER_TOPIC = "orders_dlq_redriven"
REDRIVE_HEADER = "kstream.redrive.of"
TRANSACTIONAL_ID = "kstream-lab-redrive"

Fix = Callable[[dict], bytes | None]


def dead_letter_id(row: dict) -> str:
    """Stable identity of a dead letter: where the original record lived."""
    return f"{row['source_topic']}/{row['source_partition']}/{row['source_offset']}"


def already_redriven(settings: Settings, ledger: str = LEDGER_TOPIC) -> set[str]:
    if ledger not in list_topics(settings):
        return set()
    keys = replay(ledger, value_format="raw", settings=settings)
    return set(keys["key"].drop_nulls().to_list()) if keys.height else set()


def redrive(
    dead: pl.DataFrame,
    *,
    fix: Fix | None = None,
    dry_run: bool = True,
    ledger: str = LEDGER_TOPIC,
    settings: Settings | None = None,
) -> pl.DataFrame:
    """Re-publish the selected DLQ rows (from :func:`dead_letters`) to their source topics.

    ``fix(row) -> bytes | None`` may return corrected value bytes (None keeps the original). Returns
    one row per input with ``status``: would-redrive (dry run), redriven, or already-redriven.
    """
    settings = settings or get_settings()
    missing = {"source_topic", "source_partition", "source_offset", "value", "key"} - set(dead.columns)
    if missing:
        raise ConfigError(f"redrive needs DLQ rows from dead_letters(); missing columns {sorted(missing)}")
    done = already_redriven(settings, ledger)
    rows = dead.to_dicts()
    ids = [dead_letter_id(r) for r in rows]
    todo = [(i, r) for i, r in zip(ids, rows, strict=True) if i not in done]
    status = {i: "already-redriven" for i in ids if i in done}
    if todo and not dry_run:
        _ensure_ledger(settings, ledger)
        now = str(int(time.time() * 1000)).encode()
        records = []
        for rid, row in todo:
            value = (fix(row) if fix else None) or row["value"]
            headers = [(REDRIVE_HEADER, rid.encode()), ("kstream.redrive.at", now)]
            records.append(
                {"topic": row["source_topic"], "key": _bytes(row["key"]), "value": value, "headers": headers}
            )
            records.append({"topic": ledger, "key": rid.encode(), "value": now})
        publish_atomically(settings, TRANSACTIONAL_ID, records)
    for rid, _ in todo:
        status[rid] = "would-redrive" if dry_run else "redriven"
    return pl.DataFrame({"dead_letter": ids, "status": [status[i] for i in ids]})


def _ensure_ledger(settings: Settings, ledger: str) -> None:
    if ledger not in list_topics(settings):
        apply_topics(settings, [TopicSpec(name=ledger, partitions=1, cleanup_policy="compact")])


def _bytes(key: object) -> bytes | None:
    if key is None or isinstance(key, bytes):
        return key
    return str(key).encode()
