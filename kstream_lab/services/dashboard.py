"""Live sales and pipeline health for the order pipeline (Streamlit): `kstream-lab dashboard`.

A thin page: every number comes from kstream_lab.monitoring, which reads the sink (short read-only
connections, never locking out the sink worker), the broker (watermarks, group lag, dead letters via
kstream_lab.replay) and the workers' metrics endpoints. Each panel is a fragment that re-runs on its
own timer, so a refresh redraws values in place instead of reloading the page.

Streamlit runs a page as a script, top to bottom on every refresh: `kstream-lab dashboard` hands it
this file (wherever the package is installed), ``streamlit run apps/dashboard.py`` a script that
calls :func:`main`; importing the module draws nothing.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, cast

import altair as alt
import streamlit as st

from kstream_lab.errors import KStreamLabError
from kstream_lab.monitoring import DashboardContext
from kstream_lab.monitoring.backtest import parse_range, range_for_minute, run_backtest
from kstream_lab.monitoring.health import lag_table, throughput_table
from kstream_lab.monitoring.sales import chart_frame, format_cents, minute_label, minute_table, tier_order
from kstream_lab.monitoring.views import HealthView, SalesView, health_view, sales_view

TIER_COLORS = {"bronze": "#b0703c", "silver": "#9aa5b1", "gold": "#e0b020", "platinum": "#4f7cac"}


def stacked_bars(chart, y: str, title: str) -> alt.Chart:
    """One bar per minute, stacked by tier in rank order, tier colours fixed across refreshes."""
    tiers = tier_order(chart["tier"].unique().to_list())
    return (
        alt.Chart(chart, height=280)
        .mark_bar()
        .encode(
            x=alt.X(
                "minute:O",
                timeUnit="utcyearmonthdatehoursminutes",
                title="minute (UTC)",
                axis=alt.Axis(format="%H:%M", labelAngle=0, labelOverlap=True),
            ),
            y=alt.Y(y, type="quantitative", stack="zero", title=title),
            color=alt.Color(
                "tier:N",
                scale=alt.Scale(domain=tiers, range=[TIER_COLORS.get(t, "#888") for t in tiers]),
                legend=alt.Legend(orient="bottom", title=None),
            ),
            order=alt.Order("tier_rank:Q"),
            tooltip=[
                alt.Tooltip("minute:T", format="%H:%M", title="minute"),
                "tier:N",
                alt.Tooltip("sales_usd:Q", format="$,.2f", title="sales"),
                "orders:Q",
            ],
        )
    )


def live(key: str, collect, render) -> None:
    """Draw the last view at once, fetch the new one, then redraw in place: no blank, no stale fade."""
    slot = st.empty()
    if key in st.session_state:
        with slot.container():
            render(st.session_state[key])
    st.session_state[key] = view = collect()
    with slot.container():
        render(view)


def render_sales(view: SalesView) -> None:
    if view.totals is None:
        (st.warning if view.level == "warning" else st.info)(view.message)
        return
    totals = view.totals
    newest = totals.filter(totals["window_start"] == totals["window_start"].max())
    c1, c2, c3 = st.columns(3)
    c1.metric("Newest minute (UTC)", newest["minute"][0].strftime("%H:%M"))
    c2.metric("Sales in that minute", format_cents(int(newest["total_cents"].sum())))
    c3.metric("Orders in that minute", f"{int(newest['count'].sum()):,}")
    chart = chart_frame(totals)
    left, right = st.columns(2)
    left.caption("Sales per minute by loyalty tier ($, all partitions)")
    left.altair_chart(stacked_bars(chart, "sales_usd", "sales ($)"))
    right.caption("Orders per minute by loyalty tier")
    right.altair_chart(stacked_bars(chart, "orders", "orders"))
    st.caption(
        "Per minute (newest first; exact cents, summed over source partitions; "
        "'open' = a partition has not closed the window yet)"
    )
    st.table(minute_table(totals), hide_index=True)


def render_health(view: HealthView, ctx: DashboardContext) -> None:
    if view.problem:
        (st.warning if view.problem_level == "warning" else st.error)(view.problem)
    for warning in view.warnings:
        st.warning(warning)
    if view.report is not None:
        lags = lag_table(view.report)
        c1, c2, c3 = st.columns(3)
        c1.metric("Dead letters", "—" if view.dlq_count is None else f"{view.dlq_count:,}")
        c2.metric("Late events", "—" if view.late_count is None else f"{view.late_count:,}")
        c3.metric("Total lag", f"{sum(r['total'] for r in lags):,}")
        left, right = st.columns(2)
        left.caption("Throughput (offsets/s since the last refresh)")
        left.table(throughput_table(ctx.topics, view.report), hide_index=True)
        right.caption(
            "Consumer lag per group and partition (on a transactional topic a lag of 1 can be the last commit marker)"
        )
        if lags:
            right.table(lags, hide_index=True)
        else:
            right.info("No consumer group has committed offsets yet.")
    st.caption("Workers (counters since each worker started; breaker state of the enricher's customer lookups)")
    st.table(view.workers, hide_index=True)
    if view.dead_letters:
        st.caption("Latest dead letters (headers error.class / error.message)")
        st.table(view.dead_letters, hide_index=True)


def sales_panel(ctx: DashboardContext, minutes: int) -> None:
    live("sales_view", lambda: sales_view(ctx, minutes), render_sales)
    view = st.session_state["sales_view"]
    if view.totals is None:
        return
    seen = sorted(set(view.totals["window_start"].to_list()), reverse=True)
    st.selectbox(
        "Back-test a minute",
        [None, *seen],
        key="bt_minute",
        on_change=jump_to_minute,
        format_func=lambda ws: "pick a minute…" if ws is None else f"{minute_label(ws)} UTC",
    )
    if st.session_state.pop("bt_jump", False):
        st.rerun(scope="app")  # the back-test form lives outside this fragment


def jump_to_minute() -> None:
    """Point the back-test at the picked minute (a callback may set widget state; the body may not)."""
    picked = st.session_state.get("bt_minute")
    if picked is not None:
        rng = range_for_minute(picked)
        st.session_state.update(bt_start=rng.start, bt_end="", bt_focus=rng.focus_ms, bt_jump=True)


def health_panel(ctx: DashboardContext) -> None:
    # The session state's keys are typed ``str | int``; the views use string keys only.
    state = cast(MutableMapping[str, Any], st.session_state)
    live("health_view", lambda: health_view(ctx, state), lambda view: render_health(view, ctx))


def backtest_panel(ctx: DashboardContext) -> None:
    st.session_state.setdefault("bt_start", "earliest")
    st.session_state.setdefault("bt_end", "")
    st.caption(
        "Re-run the aggregation over a range of the enriched topic and compare with the live final "
        "windows (pick a minute above, or type a range)."
    )
    if st.session_state.get("bt_focus") is not None:
        st.caption(
            f"Focus: the minute {minute_label(st.session_state['bt_focus'])} UTC (whole committed range "
            "back-tested, that minute shown per tier)"
        )
    with st.form("backtest"):
        c1, c2 = st.columns(2)
        start = c1.text_input("Start", key="bt_start", help="earliest, an ISO time, '@<epoch ms>' or '15m ago'")
        end = c2.text_input("End (empty = now)", key="bt_end")
        submitted = st.form_submit_button("Run back-test")
    if not submitted:
        return
    rng = parse_range(start, end or "", st.session_state.get("bt_focus"))
    assert ctx.spec.path is not None  # DashboardContext.load reads the pipeline file
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
    if view.focus and rng.focus_ms is not None:  # a focus table is built only for a focus minute
        st.caption(f"Minute {minute_label(rng.focus_ms)} UTC: live vs back-test, summed over partitions")
        st.table(view.focus, hide_index=True)
    st.caption("Mismatching windows" if not view.diff.is_empty() else "No mismatching windows")
    if not view.diff.is_empty():
        st.dataframe(view.diff, hide_index=True)
    with st.expander(f"All {view.windows.height} windows with their status"):
        st.dataframe(view.windows, hide_index=True)


def main() -> None:
    """The page: settings in the sidebar, then sales, health and back-test panels, each its own fragment."""
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
    st.fragment(sales_panel, run_every=refresh_s)(ctx, int(minutes))
    st.header("Pipeline health")
    st.fragment(health_panel, run_every=refresh_s)(ctx)
    st.header("Back-test")
    st.fragment(backtest_panel)(ctx)


if __name__ == "__main__":  # how Streamlit runs this file
    main()
