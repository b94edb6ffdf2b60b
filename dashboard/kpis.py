"""KPIs: the week's numbers for executives — cycle time, latency, lag, exception rate, SLA attainment, onboarding."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import streamlit as st

from correlator.kpis import DURATIONS, kpi_table, partner_onboarding, periods
from dashboard import charts, context
from dashboard.widgets import Page, prepare

CACHE_S = 300  # KPIs are read by the week; five minutes old is fresh enough, and they are the costliest page
RANGES = {"last 7 days": 7, "last 4 weeks": 28, "last 13 weeks": 91}
TRENDS = (
    ("sla_attainment", "SLA attainment", True),
    ("exception_rate", "Exception rate", True),
    ("cycle_time_p50_h", "Cycle time p50 (h)", False),
    ("confirmation_lag_p50_min", "Confirmation lag p50 (min)", False),
    ("inventory_latency_p50_min", "Inventory latency p50 (min)", False),
)
HIGHER_IS_BETTER = {"sla_attainment"}
ATTAINMENT = (
    "SLA attainment is the share of orders whose SLA is decided that met it: completed in time, against "
    "breached (completed late, or still open and already late)."
)


def _table_columns(by: str) -> dict[str, object | None]:
    """Headings a reader understands, shares as percentages, durations to one decimal; the CSV keeps
    the column names a BI tool reads."""
    number = st.column_config.NumberColumn
    columns: dict[str, object | None] = {
        "period": st.column_config.TextColumn("Period"),
        "group": st.column_config.TextColumn(by.capitalize()) if by != "overall" else None,  # overall: one group
        "transactions": number("Orders", format="localized"),
        "with_exception": number("With an exception", format="localized"),
        "complete": number("Completed", format="localized"),
        "met": number("Met SLA", format="localized"),
        "breached": number("Breached SLA", format="localized"),
        "exception_rate": number("Exception rate", format="percent"),
        "sla_attainment": number("SLA attainment", format="percent"),
    }
    for d in DURATIONS:
        unit = d.column("p50").rsplit("_", 1)[1]
        for stat in ("p50", "p90"):
            columns[d.column(stat)] = number(f"{d.label} {stat} ({unit})", format="%.1f")
    return columns


ONBOARDING_COLUMNS = {
    "partner": st.column_config.TextColumn("Partner"),
    "first_seen": st.column_config.DatetimeColumn("First seen", format="YYYY-MM-DD HH:mm [UTC]"),
    "first_success": st.column_config.DatetimeColumn("First order within SLA", format="YYYY-MM-DD HH:mm [UTC]"),
    "transactions": st.column_config.NumberColumn("Orders", format="localized"),
    "days_to_first_success": st.column_config.NumberColumn("Days to first success", format="%.1f"),
}


def render() -> None:
    page = prepare("KPIs")
    if page is None:
        return
    cols = st.columns(3)
    days = RANGES[cols[0].selectbox("Range", list(RANGES))]
    grain = cols[1].segmented_control("Per", ["day", "week"], default="day", required=True)
    by = cols[2].segmented_control("By", ["overall", "channel", "partner"], default="overall", required=True)
    end = _day_after(page.now)
    start = end - timedelta(days=days)
    table = _kpis(page, start, end, grain, None if by == "overall" else by)
    if table.empty:
        st.info("No orders started in this range yet.")
        return
    _headline(page, start, end)
    current = _current_period(page.now, grain)
    labels = _period_labels(table["period"], current, start)
    partial = labels != table["period"]
    _trends(table, set(table["period"][partial]))
    if grain == "day":
        notes = ["Today is not over: its points are hollow."]
    else:
        notes = ["This week is not over, and a week the range starts inside is not whole: their points are hollow."]
    if by != "overall":
        notes.append("Inventory latency is measured per inventory sync, which has no channel or partner: see Overall.")
    st.caption(" ".join(notes))
    st.subheader("Table")
    st.dataframe(table.assign(period=labels), hide_index=True, column_config=_table_columns(by))
    # The CSV keeps plain dates for BI tools, and says which periods are not whole.
    st.download_button(
        "Download CSV",
        table.assign(partial=partial).to_csv(index=False).encode(),
        f"syncwatch-kpis-{grain}-{by}.csv",
        "text/csv",
    )
    st.subheader("Partner onboarding")
    st.dataframe(_onboarding(page.config.db), hide_index=True, column_config=ONBOARDING_COLUMNS)


def _kpis(page: Page, start: datetime, end: datetime, grain: str, by: str | None) -> pd.DataFrame:
    return _cached_kpis(page.config.db, start, end, grain, by)


@st.cache_data(ttl=CACHE_S, show_spinner="Computing KPIs…")
def _cached_kpis(db: str, start: datetime, end: datetime, grain: str, by: str | None) -> pd.DataFrame:
    """One KPI table per database, window and grouping; ``db`` keys the cache."""
    store = context.store()
    if store is None:
        return pd.DataFrame()
    return kpi_table(store, context.config(), start, end, grain=grain, by=by)


@st.cache_data(ttl=CACHE_S, show_spinner=False)
def _onboarding(db: str) -> pd.DataFrame:
    store = context.store()
    return partner_onboarding(store) if store is not None else pd.DataFrame()


def _period_labels(periods: pd.Series, current: str, start: datetime) -> pd.Series:
    """Periods as the table shows them: the running one '(so far)', a week the range starts inside
    '(from Wed 18 Nov)', so a part of a period is never read as a whole one."""
    first = start.date().isoformat()
    return periods.map(
        lambda p: f"{p} (so far)" if p == current else f"{p} (from {start:%a %d %b})" if p < first else p
    )


def _current_period(now: datetime, grain: str) -> str:
    """The period still running, named as the KPI table names its periods."""
    return str(periods(pd.Series([now.strftime("%Y-%m-%d")]), grain).iloc[0])


def _day_after(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


def _headline(page: Page, start: datetime, end: datetime) -> None:
    """This week against the week before, one number each."""
    week = _kpis(page, end - timedelta(days=14), end, "week", None)
    weekly = _last_two(week)
    st.caption("This week so far (from Monday) against last week, whatever the range below shows:")
    cols = st.columns(len(TRENDS))
    for col, (column, label, percent) in zip(cols, TRENDS, strict=True):
        now, before = weekly.get(column, (None, None))
        color = "normal" if column in HIGHER_IS_BETTER else "inverse"
        explained = ATTAINMENT if column == "sla_attainment" else None
        delta = _delta(now, before, percent)
        if delta is not None and delta.startswith("no change"):
            color = "off"  # a change that rounds away is neither good nor bad news
        col.metric(label, _show(now, percent), delta, delta_color=color, help=explained)
    tails = _tails(week)
    if tails:
        st.caption(f"p90 this week, the slowest tenth: {', '.join(tails)}.")


def _tails(week: pd.DataFrame) -> list[str]:
    """This week's p90 of each duration the cards show at p50, in the cards' units."""
    if week.empty:
        return []
    last = week.sort_values("period").iloc[-1]
    found = []
    for column, label, _ in TRENDS:
        tail = _p90_of(column, week)
        if tail and pd.notna(last[tail]):
            name, unit = label.split(" p50 ")
            found.append(f"{name.lower()} {last[tail]:,.1f} {unit.strip('()')}")
    return found


def _p90_of(column: str, table: pd.DataFrame) -> str | None:
    """The p90 column beside a p50 one, where the table has it."""
    tail = column.replace("_p50_", "_p90_")
    return tail if tail != column and tail in table.columns else None


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
    shown = f"{change * 100:+.1f} pts" if percent else f"{change:+,.1f}"
    if shown.lstrip("+-") in ("0.0 pts", "0.0"):
        return "no change vs last week"
    return f"{shown} vs last week"


def _trends(table: pd.DataFrame, partial: set[str]) -> None:
    left, right = st.columns(2)
    shown = [(c, label, percent) for c, label, percent in TRENDS if c in table and table[c].notna().any()]
    for i, (column, label, percent) in enumerate(shown):
        tail = _p90_of(column, table)
        title = label.replace("p50", "p50 and p90 (dashed)") if tail else label
        (left if i % 2 == 0 else right).plotly_chart(
            charts.kpi_trend(table, column, title, percent, tail, partial=partial), key=f"trend_{column}"
        )


if __name__ == "__main__":
    render()
