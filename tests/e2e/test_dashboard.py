"""The live dashboard in a real browser, over the real pipeline.

Broker (session fixture), customer service, enricher, aggregator and sink (real processes on an
isolated, renamed copy of pipelines/orders.yaml), `kstream-lab dashboard` (Streamlit) and headless
Chromium. The page is opened *before* any order exists and is never reloaded: the totals must appear
through the page's own refresh, to the cent.
"""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl
from playwright.sync_api import expect

from kstream_lab.monitoring.sales import format_cents, minute_label
from tests.support.pipeline import Pipeline, produce_truth

# 20 ms apart: 80 s of event time, so minute M is complete and closed by the records after it; 1% late and
# 0.5% poison records exercise the late and dead-letter panels.
ORDERS = 4_000


def test_dashboard_shows_the_new_minutes_total_to_the_cent(
    live_pipeline: Pipeline, serve_dashboard, page, artifacts: Path
) -> None:
    pipe = live_pipeline
    for name in ("customer-service", "enricher", "aggregator", "sink"):
        pipe.start(name)
    url = serve_dashboard(pipe.file)
    page.goto(url)
    expect(page.get_by_text("No sales", exact=False).first).to_be_visible(timeout=30_000)

    minute = (int(time.time() * 1000) // 60_000 - 5) * 60_000
    truth = produce_truth(pipe, ORDERS, seed=11, start_ms=minute)
    ok = truth.filter(pl.col("kind") == "ok")
    in_minute = ok.filter(pl.col("window_start") == minute)
    total, orders = int(in_minute["total_cents"].sum()), in_minute.height
    per_tier = dict(in_minute.group_by("tier").agg(pl.col("total_cents").sum()).iter_rows())
    assert 2_850 < orders < 3_100  # 60 s at 20 ms apart, less late and poison, give or take disorder at the edges

    row = page.locator("table tr", has_text=minute_label(minute))
    expect(row).to_contain_text(format_cents(total), timeout=60_000)
    expect(row).to_contain_text("final", timeout=30_000)
    cells = row.locator("td, th").all_inner_texts()
    for tier, cents in per_tier.items():
        assert format_cents(cents) in cells, (tier, cents, cells)
    assert f"{orders:,}" in cells

    for worker in ("enricher", "aggregator", "sink"):
        worker_row = page.locator("table tr").filter(has=page.get_by_role("cell", name=worker, exact=True))
        expect(worker_row).to_contain_text("up", timeout=15_000)
    enricher = page.locator("table tr").filter(has=page.get_by_role("cell", name="enricher", exact=True))
    expect(enricher).to_contain_text("customer-service: closed", timeout=15_000)
    poison, late = truth.filter(pl.col("kind") == "poison").height, truth.filter(pl.col("kind") == "late").height
    assert poison > 0 and late > 0
    for label, n in (("Dead letters", poison), ("Late events", late)):
        card = page.locator('[data-testid="stMetric"]', has_text=label)
        expect(card.locator('[data-testid="stMetricValue"]')).to_have_text(f"{n:,}", timeout=30_000)
    reasons = page.locator("table tr", has_text=f"{pipe.topic('orders_raw')}[")
    expect(reasons).to_have_count(min(10, poison), timeout=30_000)
    # From the minute to a back-test: pick it, run, and the replay must agree with the live result.
    page.get_by_test_id("stSelectbox").click()
    page.get_by_role("option", name=f"{minute_label(minute)} UTC").click()
    expect(page.get_by_text(f"Focus: the minute {minute_label(minute)} UTC", exact=False)).to_be_visible(timeout=15_000)
    page.get_by_role("button", name="Run back-test").click()
    verdict = page.get_by_text("Verdict: MATCH: every judged window equals the live result", exact=True)
    expect(verdict).to_be_visible(timeout=60_000)
    for tier, cents in per_tier.items():
        focus_row = (
            page.locator("table tr")
            .filter(has=page.get_by_role("cell", name=tier, exact=True))
            .filter(has_text="match")
        )
        expect(focus_row).to_contain_text(f"{format_cents(cents)}{format_cents(cents)}")

    page.set_viewport_size({"width": 1400, "height": 2600})  # Streamlit scrolls inside its main block
    page.wait_for_timeout(1_000)
    page.screenshot(path=str(artifacts / "dashboard.png"))
    (artifacts / "expected.txt").write_text(
        f"minute {minute_label(minute)} UTC: {format_cents(total)} ({orders} orders) {per_tier}\n"
    )
