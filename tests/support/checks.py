"""The fault tests' shared checks: exact results once the producer is done, exactly-once for a
read_committed reader, and a worker's metric read from its /metrics endpoint."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import httpx
import polars as pl

from kstream_lab.generator.customers import UNKNOWN_TIER
from kstream_lab.kafka.admin import committed_offsets
from kstream_lab.kafka.read import snapshot_bounds
from kstream_lab.schemas.serde import SerdeContext, value_decoder
from tests.support.pipeline import (
    BackgroundProducer,
    Pipeline,
    assert_pipeline_results,
    expected_rows,
    sink_by_key,
    sink_matches,
)
from tests.support.processes import run_cli


def metric(pipe: Pipeline, worker: str, name: str, labels: str = "") -> float | None:
    port = getattr(pipe.workers, worker).metrics_port
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return None
    m = re.search(rf"^{name}\{{[^}}]*{labels}[^}}]*\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def assert_exact_and_once(
    pipe: Pipeline, producer: BackgroundProducer, when: str, *, tier_of: dict[str, str] | None = None
) -> None:
    """Once the producer is done: the sink equals the truth to the cent, DLQ and late topics match,
    and a read_committed reader sees everything exactly once. ``tier_of`` (order id -> tier) replaces
    the truth's tiers where the enricher fell back (see :func:`enriched_tiers`)."""
    truth = producer.truth()
    window = pipe.spec.aggregation().window
    expected = expected_rows(truth, window.size_ms, window.grace_ms, tier_of=tier_of)
    try:
        pipe.wait_for(lambda: sink_matches(pipe, expected), timeout=240, what=f"the sink to match the truth {when}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{where_it_stopped(pipe, truth, expected)}") from None
    assert_pipeline_results(pipe, truth, expected)
    assert_read_committed_exactly_once(pipe, truth)


def enriched_tiers(pipe: Pipeline, truth: pl.DataFrame, timeout: float = 240) -> dict[str, str]:
    """Order id -> the tier the enricher gave it, once every non-poison order is enriched; each is the
    truth's tier or UNKNOWN_TIER (its fallback while the customer service could not answer)."""
    want = truth.filter(pl.col("kind") != "poison")
    enriched = pipe.wait_for(
        lambda: (got := pipe.decoded("orders_enriched")) and len(got) >= want.height and got,
        timeout=timeout,
        what="every order to be enriched",
    )
    tiers = {key.decode(): value["loyalty_tier"] for key, value in enriched}
    true_tier = dict(want.select("order_id", "tier").iter_rows())
    assert tiers.keys() == true_tier.keys()
    wrong = {oid: t for oid, t in tiers.items() if t not in (true_tier[oid], UNKNOWN_TIER)}
    assert not wrong, f"{len(wrong)} orders got a tier that is neither theirs nor {UNKNOWN_TIER}"
    return tiers


def assert_backtest_matches(
    pipe: Pipeline, env: dict[str, str], *, timeout: float = 180, caught_up_s: float | None = 120
) -> None:
    """``kstream-lab backtest`` (with ``env``: the broker the pipeline runs on) exits 0 with MATCH, once
    the aggregator has committed every record (``caught_up_s``; None: the caller knows it has)."""
    if caught_up_s is not None:
        pipe.wait_for(pipe.aggregator_caught_up, caught_up_s, "the aggregator to commit every offset")
    res = run_cli("backtest", env={**env, "KSTREAM_PIPELINE_FILE": str(pipe.file)}, timeout=timeout)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert "verdict: MATCH" in res.stdout


def where_it_stopped(pipe: Pipeline, truth: pl.DataFrame, expected: dict) -> str:
    """Which hop fell short: records per topic (distinct keys), committed offsets, sink rows off."""
    lines = [f"truth: {truth.height} orders, {truth.filter(pl.col('kind') == 'poison').height} poison"]
    enriched = pipe.read("orders_enriched")
    for role in ("orders_raw", "orders_enriched", "orders_dlq", "orders_late", "sales_aggregates"):
        records = enriched if role == "orders_enriched" else pipe.read(role)
        lines.append(f"{role}: {len(records)} committed records, {len({r.key for r in records})} keys")
    topic = pipe.topic("orders_enriched")
    ends = {p: b.end for p, b in snapshot_bounds(pipe.settings, topic).items()}
    got = committed_offsets(pipe.settings, pipe.workers.aggregator.group_id, topic, sorted(ends))
    lines.append(f"aggregator committed {got} of ends {ends}")
    sink = sink_by_key(pipe.sink_rows())
    off = [k for k in expected if sink.get(k) != expected[k]]
    lines.append(
        f"sink: {len(sink)} rows, {len(off)} of {len(expected)} expected differ, e.g. "
        + "; ".join(f"{k}: want {expected[k]} got {sink.get(k)}" for k in off[:3])
    )
    seen: dict[bytes, list[str]] = defaultdict(list)
    for r in enriched:
        seen[r.key].append(f"{r.partition}@{r.offset}")
    doubled = {k: v for k, v in seen.items() if len(v) > 1}
    if doubled:
        lines.append(
            f"{len(doubled)} keys twice in orders_enriched, e.g. "
            + "; ".join(f"{k.decode()}: {v}" for k, v in list(doubled.items())[:6])
        )
    lines += _unexpected_late(pipe, truth, enriched)
    return "\n".join(lines)


def _unexpected_late(pipe: Pipeline, truth: pl.DataFrame, enriched: list) -> list[str]:
    """Records in orders_late the truth calls on time: where each sits in orders_enriched, and the
    watermark (max event time before it in offset order) it met there."""
    late_truth = set(truth.filter(pl.col("kind") == "late")["order_id"].to_list())
    extra = {r.key.decode() for r in pipe.read("orders_late")} - late_truth
    if not extra:
        return []
    window = pipe.spec.aggregation().window
    name = pipe.topic("orders_enriched")
    decode = value_decoder(pipe.settings, pipe.spec.topic(name))
    wm: dict[int, int] = {}
    out = [f"{len(extra)} records in orders_late that the truth calls on time, e.g.:"]
    for r in enriched:  # by partition, then offset
        ts = decode(r.value, SerdeContext(r.topic, r.partition, r.offset))["timestamp"]
        if r.key.decode() in extra and len(out) < 6:
            closes = ts - ts % window.size_ms + window.size_ms + window.grace_ms
            out.append(
                f"  {r.key.decode()} at {r.partition}@{r.offset}: ts {ts}, its window closes at {closes}, "
                f"watermark before it {wm.get(r.partition)}"
            )
        wm[r.partition] = max(wm.get(r.partition, ts), ts)
    return out


def assert_read_committed_exactly_once(pipe: Pipeline, truth: pl.DataFrame) -> None:
    """A read_committed reader sees every enriched order once, and per window a strictly increasing
    series of updates with at most one final, last."""
    enriched = pipe.read("orders_enriched")
    assert Counter(Counter(r.key for r in enriched).values()) == {1: truth.filter(pl.col("kind") != "poison").height}
    series: dict[bytes, list[dict]] = defaultdict(list)
    for key, value in pipe.decoded("sales_aggregates"):
        series[key].append(value)
    for key, values in series.items():
        seen = [(v["count"], v["final"]) for v in values]  # a final may repeat the last update's count
        assert seen == sorted(set(seen)), f"duplicate or reordered updates for {key!r}: {seen}"
        assert all(not final for _count, final in seen[:-1])
