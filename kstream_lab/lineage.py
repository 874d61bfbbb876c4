"""Lineage: which topic/partition offset ranges a run read, and which schema ids it saw.

The notebook runner executes a notebook in a separate kernel process, so lineage travels through a
file: the runner sets ``KSTREAM_LINEAGE_FILE`` for the kernel, and every bounded read appends one JSON
line per partition range to it. Ranges are half-open ``[start, end)`` offsets, exactly what was read,
so a report can be re-run on the same data.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kstream_lab.settings import Settings


@dataclass(frozen=True)
class RangeRead:
    topic: str
    partition: int
    start: int
    end: int
    records: int
    schema_ids: list[int] = field(default_factory=list)
    source: str = "broker"  # or "cache": the exact replay cache served it, nothing was fetched


def record_reads(settings: Settings, reads: Iterable[RangeRead]) -> None:
    """Append reads to the lineage file, if this process runs under the notebook runner."""
    if settings.lineage_file is None:
        return
    now = int(time.time() * 1000)
    with Path(settings.lineage_file).open("a") as fh:
        for r in reads:
            fh.write(json.dumps({**asdict(r), "at": now}) + "\n")


def load_reads(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarize(reads: list[dict]) -> dict:
    """Per topic and partition: the union of ranges read (merged when they touch) and schema ids."""
    by_tp: dict[tuple[str, int], list[tuple[int, int]]] = {}
    schema_ids: set[int] = set()
    for r in reads:
        by_tp.setdefault((r["topic"], r["partition"]), []).append((r["start"], r["end"]))
        schema_ids.update(r.get("schema_ids") or [])
    topics: dict[str, dict[str, list[list[int]]]] = {}
    for (topic, part), ranges in sorted(by_tp.items()):
        merged: list[list[int]] = []
        for start, end in sorted(ranges):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        topics.setdefault(topic, {})[str(part)] = merged
    return {"topics": topics, "schema_ids": sorted(schema_ids)}
