"""KPIs: the week's numbers for executives — cycle time, latency, lag, exception rate, SLA attainment, onboarding."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import streamlit as st

from correlator.kpis import DURATIONS, as_it_stood, kpi_table, partner_onboarding, periods
from dashboard import charts, context
from dashboard.widgets import Page, prepare
from syncwatch.redact import spreadsheet_safe
from syncwatch.store.kpis import NO_PARTNER

CACHE_S = 300  # KPIs are read by the week; five minutes old is fresh enough, and they are the costliest page
LAST_WEEK = "last complete week"  # Monday to Sunday before this one: on a Monday, "last 7 days" is mostly today
RANGES = {"last 7 days": 7, LAST_WEEK: 7, "last 4 weeks": 28, "last 13 weeks": 91}
TRENDS = (
    ("sla_attainment", "SLA attainment", True),
    ("exception_rate", "Exception rate", True),
    ("cycle_time_p50_h", "Cycle time p50 (h)", False),
    ("confirmation_lag_p50_min", "Confirmation lag p50 (min)", False),
    ("inventory_latency_p50_min", "Inventory latency p50 (min)", False),
)
HIGHER_IS_BETTER = {"sla_attainment"}
STILL_FINISHING = 0.05  # share of a period's orders still undecided above which its figures are not final
ATTAINMENT = (
    "SLA attainment is the share of orders whose SLA is decided that met it: completed in time, against "
    "breached (completed late, or still open and already late)."
)
EXCEPTION_RATE = (
    "Exception rate is the share of orders with at least one exception, open or closed: one that resolved "
    "itself (a throttled call that went through when sent again) counts too. A duplicate notice does not."
)
EXPLAINED = {"sla_attainment": ATTAINMENT, "exception_rate": EXCEPTION_RATE}


def _table_columns(by: str) -> dict[str, object | None]:
    """Headings a reader understands, shares as percentages, durations to one decimal; the CSV keeps
    the column names a BI tool reads."""
    number = st.column_config.NumberColumn
    columns: dict[str, object | None] = {
        "period": st.column_config.TextColumn("Period", pinned=True),  # in view while the durations scroll
        # overall: one group
        "group": st.column_config.TextColumn(by.capitalize(), pinned=True) if by != "overall" else None,
        "transactions": number("Orders", format="localized"),
        "with_exception": number("With an exception", format="localized"),
        "complete": number("Completed", format="localized"),
        "met": number("Met SLA", format="localized"),
        "breached": number("Breached SLA", format="localized"),
        "exception_rate": number("Exception rate", format="percent", help=EXCEPTION_RATE),
        "sla_attainment": number("SLA attainment", format="percent", help=ATTAINMENT),
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
    "before_history": st.column_config.CheckboxColumn(
        "Live before the history", help="First seen on the history's first day: its go-live is older"
    ),
}


def render() -> None:
    page = prepare("KPIs")
    if page is None:
        return
    cols = st.columns([2, 2, 3])  # "overall · channel · partner" needs the room on a narrow screen
    chosen = cols[0].selectbox("Range", list(RANGES))
    grain = cols[1].segmented_control("Per", ["day", "week"], default="day", required=True)
    by = cols[2].segmented_control("By", ["overall", "channel", "partner"], default="overall", required=True)
    end = _monday(page.now) if chosen == LAST_WEEK else _day_after(page.now)
    start = end - timedelta(days=RANGES[chosen])
    table = _kpis(page, start, end, grain, None if by == "overall" else by)
    if table.empty:
        st.info("No orders started in this range yet.")
        return
    _headline(page)
    current = _current_period(page.now, grain)
    finishing = _still_finishing(table)
    labels = _period_labels(table["period"], current, start, finishing)
    partial = labels != table["period"]
    # Orders held before release (credit holds, unknown SKUs) have an exception by nature: charted
    # as a partner, their 100 % would flatten the real partners' lines into the top of the axis.
    charted = table[table["group"] != NO_PARTNER] if by == "partner" else table
    charted, thin = _without_thin_shares(charted)
    _trends(*_drawn_from(charted, set(table["period"][partial]), start))
    if grain == "day":
        notes = ["Days are UTC, by the day orders were captured. Today is not over"]
    else:
        notes = ["Weeks run Monday to Sunday, UTC. This week is not over, a week the range starts inside is not whole"]
    notes[0] += (
        f", and a {grain} whose orders are still finishing (over {STILL_FINISHING:.0%} of them neither met nor "
        "breached their SLA yet) will still move: their points are hollow."
    )
    if len(charted) < len(table):
        notes.append(f"Orders {NO_PARTNER} to a partner are in the table below, not in the charts.")
    if thin:
        notes.append(f"A share of fewer than {MIN_CHARTED} orders is in the table, not drawn: one breach is no 0 %.")
    if by == "partner":
        notes.append("An order split over partners counts under the first partner it was released to.")
    if by != "overall":
        notes.append("Inventory latency is measured per inventory sync, which has no channel or partner: see Overall.")
    st.caption(" ".join(notes))
    st.subheader("Table")
    st.dataframe(table.assign(period=labels), hide_index=True, column_config=_table_columns(by))
    # The CSV keeps plain dates for BI tools, and says which periods are not whole or not final.
    st.download_button(
        "Download CSV",
        table.assign(partial=partial, still_finishing=table["period"].isin(finishing))
        .map(spreadsheet_safe)
        .to_csv(index=False)
        .encode(),
        f"syncwatch-kpis-{grain}-{by}.csv",
        "text/csv",
    )
    st.subheader("Partner onboarding")
    kept = f"the last {page.config.retention_days:g} days" if page.config.retention_days else "all of it"
    st.caption(
        f"From each partner's first order in the history syncwatch keeps ({kept}). A partner already live "
        "when that history begins is marked, its days to first success left empty: they would be the "
        "history's first hours, not its onboarding."
    )
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


def _period_labels(periods: pd.Series, current: str, start: datetime, finishing: set[str]) -> pd.Series:
    """Periods as the table shows them: the running one '(so far)', a week the range starts inside
    '(from Wed 18 Nov)', one whose orders are still finishing '(still finishing)', so a part of a
    period, or figures that will still move, are never read as final."""
    first = start.date().isoformat()

    def label(period: str) -> str:
        if period == current:
            return f"{period} (so far)"
        if period < first:
            return f"{period} (from {start:%a %d %b})"
        return f"{period} (still finishing)" if period in finishing else period

    return periods.map(label)


MIN_CHARTED = 10  # orders a share must count to be drawn


def _without_thin_shares(table: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """The table with each share left out of the charts where fewer than ``MIN_CHARTED`` orders
    make it (today's first hour: one breach drew attainment down to 0 %), and whether any was."""
    decided = table["met"].fillna(0) + table["breached"].fillna(0)
    thin_attainment, thin_rate = decided < MIN_CHARTED, table["transactions"].fillna(0) < MIN_CHARTED
    shown = table.assign(
        sla_attainment=table["sla_attainment"].mask(thin_attainment),
        exception_rate=table["exception_rate"].mask(thin_rate),
    )
    thin = bool(
        (thin_attainment & table["sla_attainment"].notna()).any() or (thin_rate & table["exception_rate"].notna()).any()
    )
    return shown, thin


def _drawn_from(table: pd.DataFrame, partial: set[str], start: datetime) -> tuple[pd.DataFrame, set[str]]:
    """The periods as the charts draw them: a week the range starts inside at its first day in the
    range, as the table labels it ('from Sun 22 Nov'); drawn at its Monday, Sunday alone read as
    the week of the 16th."""
    first = start.date().isoformat()
    drawn = table.assign(period=table["period"].where(table["period"] >= first, first))
    return drawn, {max(period, first) for period in partial}


def _still_finishing(table: pd.DataFrame) -> set[str]:
    """Periods with more than ``STILL_FINISHING`` of their orders neither met nor breached yet:
    orders take a day or more, so yesterday's attainment and cycle time still change, and read as
    final they showed a crash and a speed-up on the same day."""
    totals = table.groupby("period")[["transactions", "met", "breached"]].sum()
    undecided = (totals["transactions"] - totals["met"] - totals["breached"]) / totals["transactions"]
    return set(undecided[undecided > STILL_FINISHING].index)


def _current_period(now: datetime, grain: str) -> str:
    """The period still running, named as the KPI table names its periods."""
    return str(periods(pd.Series([now.strftime("%Y-%m-%d")]), grain).iloc[0])


def _day_after(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)


def _monday(now: datetime) -> datetime:
    """This week's Monday, 00:00 UTC."""
    return (now - timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)


def _headline(page: Page) -> None:
    """This week so far against the same days and hours of last week as they stood then, one number
    each: a whole week against a part of one would read every Monday morning as a change, and last
    week's orders as they stand now have had a week longer to finish than this week's. Until this
    week has ``MIN_CHARTED`` orders (Monday morning), last week against the week before, each a
    week old then, so the tiles are never all dashes on the morning they are read most."""
    now = page.now.replace(second=0, microsecond=0)  # a minute's reruns share the cached figures
    monday, week = _monday(now), timedelta(days=7)
    this_week = _as_it_stood(page.config.db, monday, now, now)
    last_week = _as_it_stood(page.config.db, monday - week, now - week, now - week)
    which = "this week"
    if (this_week.get("transactions") or 0) < MIN_CHARTED:
        which = "last week"
        this_week = _as_it_stood(page.config.db, monday - week, monday, now)
        last_week = _as_it_stood(page.config.db, monday - 2 * week, monday - week, now - week)
        st.caption(
            f"Last week ({monday - week:%a %d %b} to {monday - timedelta(days=1):%a %d %b}, UTC) against the week "
            f"before as it stood a week ago (orders take days to finish): this week has fewer than {MIN_CHARTED} "
            "orders so far. Whatever the range below shows:"
        )
    else:
        st.caption(
            f"This week so far (since Monday 00:00 UTC) against last week until the same day and time, "
            f"{now - week:%a %H:%M} UTC, as it stood then (orders take days to finish), whatever the range below shows:"
        )
    # Three a row: five to a row cut every label short on a laptop ("SLA attain…", "Confirmation l…").
    cols = [col for row in range(0, len(TRENDS), 3) for col in st.columns(3)][: len(TRENDS)]
    for col, (column, label, percent) in zip(cols, TRENDS, strict=True):
        now_value, before = this_week.get(column), last_week.get(column)
        color = "normal" if column in HIGHER_IS_BETTER else "inverse"
        explained = EXPLAINED.get(column)
        if _thin(column, this_week):  # as the charts below: one breach among five orders is no 80 %
            now_value = None
            so_far = " so far" if which == "this week" else ""
            explained = f"{explained or ''} Fewer than {MIN_CHARTED} orders{so_far} {which}: not shown.".strip()
        delta = None if _thin(column, last_week) else _delta(now_value, before, percent)
        arrow = "auto"
        if delta == "no change":
            color, arrow = "off", "off"  # a change that rounds away is neither good nor bad news, nor up
        col.metric(label, _show(now_value, percent), delta, delta_color=color, delta_arrow=arrow, help=explained)
    tails = _tails(this_week)
    if tails:
        st.caption(f"p90 {which}, the slowest tenth: {', '.join(tails)}.")


@st.cache_data(ttl=CACHE_S, show_spinner=False)
def _as_it_stood(db: str, start: datetime, end: datetime, as_of: datetime) -> dict[str, float | None]:
    """The headline figures of one window as they stood at ``as_of``; ``db`` keys the cache."""
    store = context.store()
    return as_it_stood(store, context.config(), start, end, as_of) if store is not None else {}


def _tails(week: dict[str, float | None]) -> list[str]:
    """This week's p90 of each duration the cards show at p50, in the cards' units."""
    found = []
    for column, label, _ in TRENDS:
        tail = _p90_of(column, week)
        if tail and week.get(tail) is not None:
            name, unit = label.split(" p50 ")
            found.append(f"{name.lower()} {week[tail]:,.1f} {unit.strip('()')}")
    return found


def _p90_of(column: str, figures: pd.DataFrame | dict[str, float | None]) -> str | None:
    """The p90 column beside a p50 one, where the table (or the figures) has it."""
    tail = column.replace("_p50_", "_p90_")
    return tail if tail != column and tail in figures else None


def _thin(column: str, figures: dict[str, float | None]) -> bool:
    """A share of fewer than ``MIN_CHARTED`` orders (decided ones, for SLA attainment)."""
    of = {"sla_attainment": "decided", "exception_rate": "transactions"}.get(column)
    return of is not None and (figures.get(of) or 0) < MIN_CHARTED


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
        return "no change"
    return shown  # the caption above says against what


def _trends(table: pd.DataFrame, partial: set[str]) -> None:
    left, right = st.columns(2)
    shown = [(c, label, percent) for c, label, percent in TRENDS if c in table and table[c].notna().any()]
    for i, (column, label, percent) in enumerate(shown):
        tail = _p90_of(column, table)
        title = f"{label.replace(' p50', '')}: p50, p90 dashed" if tail else label  # the unit stays in view
        (left if i % 2 == 0 else right).plotly_chart(
            charts.kpi_trend(table, column, title, percent, tail, partial=partial), key=f"trend_{column}"
        )


if __name__ == "__main__":
    render()
