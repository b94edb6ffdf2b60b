"""KPIs: the week's numbers for executives — cycle time, latency, lag, exception rate, SLA attainment, onboarding."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import streamlit as st

from correlator.kpis import kpi_table, partner_onboarding
from dashboard import charts
from dashboard.widgets import Page, prepare

RANGES = {"last 7 days": 7, "last 4 weeks": 28, "last 13 weeks": 91}
TRENDS = (
    ("sla_attainment", "SLA attainment", True),
    ("exception_rate", "Exception rate", True),
    ("cycle_time_p50_h", "Order cycle time, median (h)", False),
    ("confirmation_lag_p50_min", "Shipment-confirmation lag, median (min)", False),
    ("inventory_latency_p50_min", "Inventory latency, median (min)", False),
)


def render() -> None:
    page = prepare("KPIs")
    if page is None:
        return
    cols = st.columns(3)
    days = RANGES[cols[0].selectbox("Range", list(RANGES))]
    grain = cols[1].segmented_control("Per", ["day", "week"], default="day") or "day"
    by = cols[2].segmented_control("By", ["overall", "channel", "partner"], default="overall") or "overall"
    end = _day_after(page.now)
    start = end - timedelta(days=days)
    table = kpi_table(page.store, page.config, start, end, grain=grain, by=None if by == "overall" else by)
    if table.empty:
        st.info("No orders started in this range yet.")
        return
    _headline(page, start, end)
    _trends(table)
    st.subheader("Table")
    st.dataframe(table, hide_index=True)
    st.download_button(
        "Download CSV", table.to_csv(index=False).encode(), f"syncwatch-kpis-{grain}-{by}.csv", "text/csv"
    )
    st.subheader("Partner onboarding")
    st.dataframe(partner_onboarding(page.store), hide_index=True)


def _day_after(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


def _headline(page: Page, start: datetime, end: datetime) -> None:
    """This week against the week before, one number each."""
    week = kpi_table(page.store, page.config, end - timedelta(days=14), end, grain="week")
    weekly = _last_two(week)
    cols = st.columns(len(TRENDS))
    for col, (column, label, percent) in zip(cols, TRENDS, strict=True):
        now, before = weekly.get(column, (None, None))
        col.metric(label, _show(now, percent), _delta(now, before, percent))


def _last_two(table: pd.DataFrame) -> dict[str, tuple[float | None, float | None]]:
    overall = table.sort_values("period")
    rows = overall.tail(2).to_dict("records")
    if not rows:
        return {}
    last, before = rows[-1], rows[0] if len(rows) == 2 else {}
    return {c: (last.get(c), before.get(c)) for c, _, _ in TRENDS}


def _show(value: float | None, percent: bool) -> str:
    if value is None or pd.isna(value):
        return "—"
    return f"{value:.1%}" if percent else f"{value:,.1f}"


def _delta(now: float | None, before: float | None, percent: bool) -> str | None:
    if now is None or before is None or pd.isna(now) or pd.isna(before):
        return None
    change = now - before
    return f"{change * 100:+.1f} pts vs last week" if percent else f"{change:+,.1f} vs last week"


def _trends(table: pd.DataFrame) -> None:
    left, right = st.columns(2)
    for i, (column, label, percent) in enumerate(TRENDS):
        if column in table and table[column].notna().any():
            (left if i % 2 == 0 else right).plotly_chart(
                charts.kpi_trend(table, column, label, percent), key=f"trend_{column}"
            )


if __name__ == "__main__":
    render()
