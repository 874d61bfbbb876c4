"""Live sales and pipeline health for the order pipeline (Streamlit): `kstream-lab dashboard`.

A thin page: every number comes from kstream_lab.monitoring, which reads the sink (short read-only
connections, never locking out the sink worker), the broker (watermarks, group lag, dead letters via
kstream_lab.replay) and the workers' metrics endpoints. Each panel is a fragment that re-runs on its
own timer, so a refresh redraws values in place instead of reloading the page.
"""

from __future__ import annotations

import streamlit as st

from kstream_lab.errors import BrokerError, KStreamLabError
from kstream_lab.monitoring import DashboardContext
from kstream_lab.monitoring.backtest import parse_range, range_for_minute, run_backtest
from kstream_lab.monitoring.health import collect_health, lag_table, latest_dead_letters, throughput_table
from kstream_lab.monitoring.sales import (
    SinkMissing,
    SinkUnavailable,
    chart_frame,
    format_cents,
    load_minute_totals,
    minute_label,
    minute_table,
)
from kstream_lab.monitoring.scrape import counters_table, scrape

st.set_page_config(page_title="kstream_lab · live sales", page_icon="📈", layout="wide")
st.title("Live sales")

try:
    ctx = DashboardContext.load()
except KStreamLabError as exc:
    st.error(f"Cannot load the pipeline: {exc}")
    st.stop()

with st.sidebar:
    st.header("Settings")
    refresh_s = st.number_input("Refresh every (seconds)", min_value=1, max_value=60, value=3, step=1)
    minutes = st.number_input("Minutes shown", min_value=5, max_value=24 * 60, value=60, step=5)
    st.caption(f"Kafka: `{ctx.settings.bootstrap}`")
    st.caption(f"Sink: {ctx.sink.describe()}")
    st.caption(f"Pipeline: `{ctx.spec.path}`")


@st.fragment(run_every=refresh_s)
def sales_panel() -> None:
    try:
        totals = load_minute_totals(ctx.sink, last_minutes=int(minutes), window_ms=ctx.window_ms)
    except SinkMissing as exc:
        st.info(f"No sales yet: {exc}.")
        return
    except SinkUnavailable as exc:
        st.warning(f"The sink cannot be read right now: {exc}")
        return
    if totals.is_empty():
        st.info("No sales aggregates yet: the sink is running but has not written a window. "
                "Produce orders (`kstream-lab produce-orders`) and they appear here within seconds.")
        return
    st.session_state["minutes_seen"] = sorted(set(totals["window_start"].to_list()), reverse=True)
    newest = totals.filter(totals["window_start"] == totals["window_start"].max())
    c1, c2, c3 = st.columns(3)
    c1.metric("Newest minute (UTC)", newest["minute"][0].strftime("%H:%M"))
    c2.metric("Sales in that minute", format_cents(int(newest["total_cents"].sum())))
    c3.metric("Orders in that minute", f"{int(newest['count'].sum()):,}")
    chart = chart_frame(totals)
    left, right = st.columns(2)
    left.caption("Sales per minute by loyalty tier ($, all partitions)")
    left.bar_chart(chart, x="minute", y="sales ($)", color="tier", stack=True, height=280)
    right.caption("Orders per minute by loyalty tier")
    right.bar_chart(chart, x="minute", y="orders", color="tier", stack=True, height=280)
    st.caption("Per minute (newest first; exact cents, summed over source partitions; "
               "'open' = a partition has not closed the window yet)")
    st.table(minute_table(totals), hide_index=True)


@st.fragment(run_every=refresh_s)
def health_panel() -> None:
    workers = scrape(ctx.endpoints, timeout_s=0.5)
    try:
        report = collect_health(ctx.settings, ctx.topics, st.session_state.get("offsets"))
    except BrokerError as exc:
        st.error(f"Broker unreachable: {exc}")
        report = None
    except Exception as exc:  # a transient Kafka error mid-refresh; the next refresh tries again
        st.warning(f"Health check failed this refresh: {type(exc).__name__}: {exc}")
        report = None
    if report is not None:
        st.session_state["offsets"] = report.snapshot
        snap = report.snapshot
        c1, c2, c3 = st.columns(3)
        c1.metric("Dead letters", f"{snap.messages(ctx.topics.dlq):,}" if ctx.topics.dlq in snap.offsets else "-")
        c2.metric("Late events", f"{snap.messages(ctx.topics.late):,}" if ctx.topics.late in snap.offsets else "-")
        c3.metric("Total lag", f"{sum(r['lag'] for r in lag_table(report)):,}")
        left, right = st.columns(2)
        left.caption("Throughput (offsets/s since the last refresh)")
        left.table(throughput_table(ctx.topics, report), hide_index=True)
        right.caption("Consumer lag per group and partition")
        lags = lag_table(report)
        if lags:
            right.table(lags, hide_index=True)
        else:
            right.info("No consumer group has committed offsets yet.")
    st.caption("Workers (counters since each worker started; breaker state of the enricher's customer lookups)")
    st.table(counters_table(workers), hide_index=True)
    if report is not None and report.snapshot.messages(ctx.topics.dlq) > 0:
        dead_letters_panel(report.snapshot.offsets[ctx.topics.dlq])


def dead_letters_panel(offsets) -> None:
    """Latest DLQ reasons; re-read only when the DLQ grew since the last refresh."""
    key = tuple((p.partition, p.high) for p in offsets)
    if st.session_state.get("dlq_key") != key:
        try:
            st.session_state["dlq_rows"] = latest_dead_letters(ctx.settings, ctx.topics.dlq, offsets, n=10)
            st.session_state["dlq_key"] = key
        except KStreamLabError as exc:
            st.warning(f"Cannot read the dead letters: {exc}")
            return
    st.caption("Latest dead letters (headers error.class / error.message)")
    st.table(st.session_state["dlq_rows"], hide_index=True)


@st.fragment
def backtest_panel() -> None:
    st.session_state.setdefault("bt_start", "15m ago")
    st.session_state.setdefault("bt_end", "")
    minutes_seen = st.session_state.get("minutes_seen", [])
    if minutes_seen:
        labels = {ws: f"{minute_label(ws)} UTC" for ws in minutes_seen}
        picked = st.selectbox("Jump to a minute", [None, *minutes_seen], format_func=lambda ws: labels.get(ws, "-"))
        if picked is not None and st.session_state.get("bt_picked") != picked:
            rng = range_for_minute(picked, ctx.window_ms, ctx.grace_ms)
            st.session_state.update(bt_picked=picked, bt_start=rng.start, bt_end=rng.end)
    with st.form("backtest"):
        c1, c2 = st.columns(2)
        start = c1.text_input("Start", key="bt_start", help="earliest, an ISO time, '@<epoch ms>' or '15m ago'")
        end = c2.text_input("End (empty = now)", key="bt_end")
        submitted = st.form_submit_button("Run back-test")
    if not submitted:
        return
    rng = parse_range(start, end or "")
    with st.spinner(f"Back-testing {ctx.topics.enriched} {rng.describe()}..."):
        try:
            view = run_backtest(ctx.settings, ctx.spec.path, rng)
        except KStreamLabError as exc:
            st.error(f"Back-test failed: {exc}")
            return
    (st.success if view.ok else st.error)(f"Verdict: {view.verdict}")
    for line in view.details:
        st.caption(line)
    if view.windows.is_empty():
        st.info("No windows in this range.")
        return
    st.caption("Mismatching windows" if not view.diff.is_empty() else "No mismatching windows")
    if not view.diff.is_empty():
        st.dataframe(view.diff, hide_index=True)
    with st.expander(f"All {view.windows.height} windows with their status"):
        st.dataframe(view.windows, hide_index=True)


sales_panel()
st.header("Pipeline health")
health_panel()
st.header("Back-test")
backtest_panel()
