"""Pipeline health from the broker's point of view: topic offsets, throughput, consumer lag, dead letters.

Everything here is read through kstream_lab's own admin and replay functions, so the dashboard sees
what ``kstream-lab topics describe`` and ``kstream_lab.replay`` see. Throughput is the change of the
topics' high watermarks between two refreshes (offsets per second; transaction markers use offsets
too, so a transactional topic reads slightly high).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kstream_lab.errors import TopicError
from kstream_lab.kafka.admin import GroupLag, PartitionOffsets, group_lags, ping, watermarks
from kstream_lab.pipeline_spec import PipelineSpec
from kstream_lab.settings import Settings
from kstream_lab.workers.dlq import DeadLetter


@dataclass(frozen=True)
class PipelineTopics:
    """The topics one pipeline file wires together, by role."""

    raw: str
    enriched: str
    aggregates: str
    dlq: str
    late: str

    @classmethod
    def from_spec(cls, spec: PipelineSpec) -> PipelineTopics:
        wc = spec.workers
        return cls(
            raw=wc.enricher.input,
            enriched=wc.enricher.output,
            aggregates=wc.aggregator.output,
            dlq=wc.enricher.dlq,
            late=wc.aggregator.late,
        )

    @property
    def consumed(self) -> tuple[str, ...]:
        """Topics read by a consumer group (the enricher, aggregator and sink inputs)."""
        return (self.raw, self.enriched, self.aggregates)

    @property
    def all(self) -> tuple[str, ...]:
        return (self.raw, self.enriched, self.aggregates, self.dlq, self.late)


@dataclass(frozen=True)
class OffsetsSnapshot:
    """High watermarks of the pipeline topics at one moment (monotonic clock)."""

    at: float
    offsets: dict[str, list[PartitionOffsets]]
    missing: tuple[str, ...] = ()

    def high(self, topic: str) -> int:
        return sum(p.high for p in self.offsets.get(topic, []))

    def messages(self, topic: str) -> int:
        return sum(p.messages for p in self.offsets.get(topic, []))


@dataclass
class HealthReport:
    snapshot: OffsetsSnapshot
    rates: dict[str, float | None]
    lags: dict[str, list[GroupLag]] = field(default_factory=dict)


def snapshot_offsets(settings: Settings, topics: PipelineTopics) -> OffsetsSnapshot:
    """Watermarks of every pipeline topic; raises BrokerError when Kafka does not answer."""
    existing = set(ping(settings, timeout=3.0))
    offsets, missing = {}, []
    for topic in topics.all:
        if topic not in existing:
            missing.append(topic)
            continue
        try:
            offsets[topic] = watermarks(settings, topic, timeout=5.0)
        except TopicError:
            missing.append(topic)
    return OffsetsSnapshot(time.monotonic(), offsets, tuple(missing))


def rates_between(before: OffsetsSnapshot | None, now: OffsetsSnapshot) -> dict[str, float | None]:
    """Offsets per second per topic since ``before``; None on the first refresh or a topic just created."""
    out: dict[str, float | None] = {}
    dt = None if before is None else now.at - before.at
    for topic in now.offsets:
        if before is None or not dt or dt <= 0 or topic not in before.offsets:
            out[topic] = None
        else:
            out[topic] = max(0, now.high(topic) - before.high(topic)) / dt
    return out


def collect_health(settings: Settings, topics: PipelineTopics, previous: OffsetsSnapshot | None) -> HealthReport:
    """Offsets, throughput since ``previous`` and lag of every group on the consumed topics."""
    snap = snapshot_offsets(settings, topics)
    lags = {}
    for topic in topics.consumed:
        if topic in snap.offsets:
            lags[topic] = group_lags(settings, topic, {p.partition: p.high for p in snap.offsets[topic]})
    return HealthReport(snap, rates_between(previous, snap), lags)


def throughput_table(topics: PipelineTopics, report: HealthReport) -> list[dict]:
    """One row per pipeline topic: role, offsets retained (records + commit markers), offsets/s since last time."""
    roles = {
        topics.raw: "in (orders)",
        topics.enriched: "enriched",
        topics.aggregates: "out (aggregates)",
        topics.dlq: "dead letters",
        topics.late: "late events",
    }
    rows: list[dict[str, object]] = []
    for topic in topics.all:
        if topic in report.snapshot.missing:
            rows.append({"topic": topic, "role": roles[topic], "offsets": None, "per second": "topic missing"})
            continue
        rate = report.rates.get(topic)
        rows.append(
            {
                "topic": topic,
                "role": roles[topic],
                "offsets": report.snapshot.messages(topic),
                "per second": "measuring..." if rate is None else f"{rate:,.1f}",
            }
        )
    return rows


def lag_table(report: HealthReport) -> list[dict]:
    """One row per (group, topic): total lag, then the lag of each partition (p0, p1, ...)."""
    rows = []
    for topic, groups in report.lags.items():
        for g in groups:
            row: dict = {"group": g.group, "topic": topic, "total": g.total_lag}
            row.update({f"p{p}": g.lag[p] for p in sorted(g.lag)})
            rows.append(row)
    return rows


@dataclass(frozen=True)
class RecordCount:
    """Committed records of a topic counted up to ``ends``; ``highs`` are the watermarks it was taken at."""

    topic: str
    ends: dict[int, int]
    highs: tuple[tuple[int, int], ...]
    records: int


def count_records(
    settings: Settings, topic: str, offsets: list[PartitionOffsets], previous: RecordCount | None = None
) -> RecordCount:
    """Exact count of the records in ``topic``, reading only what arrived since ``previous``.

    Offsets over-count a transactional topic (every commit marker takes one), and the DLQ and late
    topics are written in the workers' transactions, so the counts come from a read_committed replay
    (raw bytes, nothing decoded) instead; each refresh reads only the new offsets.
    """
    highs = tuple((p.partition, p.high) for p in offsets)
    if previous is not None and previous.highs == highs:
        return previous
    from kstream_lab.api import replay, resolve

    done = previous.ends if previous is not None else {}
    starts = {p.partition: max(p.low, done.get(p.partition, p.low)) for p in offsets}
    rng = resolve(topic, start=starts, end="latest", settings=settings)
    todo = {p: r for p, r in rng.partitions.items() if r.end > r.start}
    records = previous.records if previous is not None else 0
    if todo:
        frame = replay(
            topic,
            start={p: r.start for p, r in todo.items()},
            end={p: r.end for p, r in todo.items()},
            value_format="raw",
            settings=settings,
        )
        records += frame.height
    return RecordCount(topic, {**done, **{p: r.end for p, r in rng.partitions.items()}}, highs, records)


def latest_dead_letters(settings: Settings, topic: str, offsets: list[PartitionOffsets], n: int = 10) -> list[dict]:
    """The newest ``n`` DLQ records (by failed.at) with their reasons, read through kstream_lab.replay."""
    starts = {p.partition: max(p.low, p.high - 2 * n) for p in offsets if p.high > p.low}  # markers use offsets
    if not starts:
        return []
    from kstream_lab.api import replay

    frame = replay(topic, start=starts, end="latest", partitions=sorted(starts), value_format="raw", settings=settings)
    letters = []
    for row in frame.select("partition", "offset", "key", "headers").iter_rows(named=True):
        headers = [(h["key"], h["value"]) for h in row["headers"] or ()]
        dl = DeadLetter.from_record(None, None, headers)
        letters.append(
            {
                "failed at (UTC)": _ms_label(dl.failed_at),
                "error": dl.error_class,
                "message": dl.error_message,
                "source": f"{dl.source_topic}[{dl.source_partition}]@{dl.source_offset}",
                "key": row["key"],
                "dlq offset": f"p{row['partition']}@{row['offset']}",
                "_at": dl.failed_at,
            }
        )
    letters.sort(key=lambda r: r["_at"], reverse=True)
    return [{k: v for k, v in r.items() if k != "_at"} for r in letters[:n]]


def _ms_label(ms: int) -> str:
    from datetime import UTC, datetime

    if ms <= 0:
        return "—"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
