"""Operations: what is late and which systems need attention, readable in five seconds and refreshing itself."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from actions import roles
from dashboard import charts, circuits
from dashboard.fmt import SLA_LABELS, age, category_label, duration, fault_text, money, sla_time, when
from dashboard.widgets import Page, none_yet, open_on_select, prepare, refreshed
from syncwatch.model import stage_label
from syncwatch.redact import spreadsheet_safe
from syncwatch.store import queries as q

REFRESH_S = 30
FAILING_AT = 3  # active exceptions on one system before it is called out


def render() -> None:
    page = prepare("Operations", live=True)
    if page is None:
        return
    scope = roles.scope_of(page.config, page.viewer.actor)
    if scope != "everything":  # its figures are the whole business's; a scoped person read them as theirs
        st.caption(
            f"You work {scope}: these figures are every channel's and partner's; the Exceptions queue opens on yours."
        )
    st.fragment(run_every=REFRESH_S)(_live)(page)


def _live(page: Page) -> None:
    page = refreshed(page, REFRESH_S)
    failing = q.failing_systems(page.store)
    grid = q.open_by_sla(page.store)
    _headline(grid, failing)
    _callouts(page, failing)
    circuits.operations(page, circuits.held(page))  # partners whose automatic retries are paused
    _quiet(page)
    left, right = st.columns(2)
    with left:
        _sla(grid, "channel")
    with right:
        _sla(grid, "partner")
    _late(page)
    left, right = st.columns(2)
    with left:
        _stage_delays(page)
    with right:
        _throughput(page)


def _headline(grid: pd.DataFrame, failing: pd.DataFrame) -> None:
    """Orders, as the charts below count them; other open transactions are named in the help."""
    orders = grid["type"] == "order"
    by_state = grid[orders].groupby("sla_state")["transactions"].sum()
    others = grid[~orders].groupby("type")["transactions"].sum()
    besides = ", ".join(f"{n:,} {kind.replace('_', ' ')}s" for kind, n in others.items() if n)
    cols = st.columns(5)
    cols[0].metric(
        "Open orders",
        int(by_state.sum()),
        help="Open orders, as the charts below count them" + (f"; also open: {besides}" if besides else ""),
    )
    cols[1].metric(  # the KPIs' "breached" also counts orders completed late: this is the open ones alone
        "Open, breached",
        int(by_state.get("breached", 0)),
        help="Open orders already past their SLA. Orders completed late are counted on the KPIs page.",
    )
    cols[2].metric("At risk", int(by_state.get("at_risk", 0)), help="Open orders that have used most of their SLA")
    cols[3].metric("Active exceptions", int(failing["exceptions"].sum()) if not failing.empty else 0)
    cols[4].metric(
        "Systems to check",  # short enough for a laptop's fifth of the page
        int((failing["exceptions"] >= FAILING_AT).sum()) if not failing.empty else 0,
        help=f"Systems with {FAILING_AT} or more open exceptions of any category. Whether a system answers "
        "errors right now is on the Endpoints page.",
    )


def _callouts(page: Page, failing: pd.DataFrame) -> None:
    """The systems to call, the one failing most recently first: a partner down now comes before one
    with an older backlog, however long that is."""
    called = failing[failing["exceptions"] >= FAILING_AT].sort_values("newest", ascending=False, kind="stable")
    for row in called.itertuples():
        # The newest tells a partner failing now from an old backlog, which read the same by count.
        newest, oldest = age(row.newest, page.now), age(row.oldest, page.now)
        span = f"the newest {newest} old" if row.exceptions == 1 else f"the newest {newest}, the oldest {oldest} old"
        st.error(f"**{row.system}** needs attention: {row.exceptions} open exceptions ({row.categories}), {span}.")
        st.page_link(
            "exceptions.py",
            label=f"Open {row.system}'s exceptions",
            icon=":material/arrow_forward:",
            query_params={"system": row.system},
        )


def _quiet(page: Page) -> None:
    """Silence breaks nothing the correlator can see, so it is said here, before it shows as late
    orders; in one box, however many went quiet together (serve down, a network cut)."""
    quiet = page.store.quiet_systems(page.now)
    if not quiet:
        return
    lines = [
        f"- **{s.system}**: nothing since {when(s.last_seen)} ({duration(s.silent_for(page.now))}); in the same "
        f"hours yesterday it sent something in {s.expected} different minutes"
        for s in quiet
    ]
    many = len(quiet) > 1
    head = f"{len(quiet)} systems have gone quiet:" if many else "A system has gone quiet:"
    if many:
        check = "each one's exporter, webhook or log file, and whether they are up"
    else:
        check = "its exporter, webhook or log file, and whether it is up"
    st.warning(
        "\n".join([f"**{head}**", "", *lines, "", f"Check {check}."]),
        icon=":material/notifications_paused:",
    )


def _sla(grid: pd.DataFrame, group: str) -> None:
    """Orders only: a return's partner or an inventory sync's warehouse is no channel or partner of an order."""
    st.subheader(f"Open orders' SLA by {group}")
    data = grid[grid["type"] == "order"].groupby([group, "sla_state"], as_index=False)["transactions"].sum()
    if data.empty:
        none_yet("No open orders.")
        return
    st.plotly_chart(charts.sla_bars(data, group), key=f"sla_{group}")


LATE_ROWS = 500  # the late table's rows; the subheader counts the rest
NO_EXCEPTION = "none open"


def _late(page: Page) -> None:
    data = q.late_transactions(page.store, LATE_ROWS)
    total = q.late_count(page.store) if len(data) == LATE_ROWS else len(data)
    shown = f"{len(data):,} of {total:,}" if total > len(data) else f"{total:,}"
    st.subheader(f"Late and at risk: {shown}, least time left first")
    if total > len(data):
        st.caption("The rest have more time left: the CSV below lists every one.")
    if data.empty:
        st.success("Nothing is late or at risk.")
        return
    table = _late_table(data, page)
    open_on_select(table, list(data["id"]), "search.py", "key", key="late")
    st.download_button(
        f"Download all {total:,} as CSV",
        lambda: _late_csv(page),  # read when clicked, not on every rerun of the page
        f"syncwatch-late-{page.now:%Y%m%d-%H%M}.csv",
        "text/csv",
    )
    if table["exception"].eq(NO_EXCEPTION).any():
        st.caption(
            f"Exception '{NO_EXCEPTION}': nothing to work in the queue. An order at risk is not late yet; a late "
            "one's exception was resolved or ignored while the order stayed late (open it to see its history)."
        )


def _late_table(data: pd.DataFrame, page: Page) -> pd.DataFrame:
    """Late and at-risk transactions as a person reads them: time left, where, what to work."""
    return pd.DataFrame(
        {
            "transaction": data["id"],
            "SLA": data["sla_state"].map(SLA_LABELS),
            "time left": [sla_time(s, d, page.now) for s, d in zip(data["sla_state"], data["due_at"], strict=True)],
            "where": [
                fault_text(s, f, d, page.now)
                for s, f, d in zip(data["sla_state"], data["stage_at_fault"], data["due_at"], strict=True)
            ],
            "exception": [category_label(c) if isinstance(c, str) else NO_EXCEPTION for c in data["exception"]],
            "channel": data["channel"].fillna(q.NO_CHANNEL),
            "partner": data["partner"].fillna(q.NO_PARTNER),
            "customer": data["customer"].fillna("—"),
            "value": data["order_value"].map(money),
        }
    )


def _late_csv(page: Page) -> bytes:
    """Every open transaction late or at risk, least time left first, in the table's words and
    columns as of the page's time, with the value as a number and the due time a spreadsheet sorts by."""
    every = q.late_transactions(page.store, None)
    due = [f"{d:%Y-%m-%d %H:%M} UTC" if pd.notna(d) else "" for d in every["due_at"]]
    # The value as a number a spreadsheet sums, not '$15,778.56'; the due time is the stage's, past or coming.
    value = pd.to_numeric(every["order_value"], errors="coerce")
    table = _late_table(every, page).assign(value=value, **{"due (UTC)": due})
    return table.map(spreadsheet_safe).to_csv(index=False).encode()


def _stage_delays(page: Page) -> None:
    st.subheader("Where open orders are late or at risk (stage × partner)")
    found = q.stage_delays(page.store, page.now)
    behind = int(found.loc[found["behind"] == 1, "transactions"].sum()) if not found.empty else 0
    data = found[found["behind"] == 0] if not found.empty else found
    if behind:
        st.caption(
            f"Not drawn here: {behind} breached order{'s' if behind != 1 else ''} whose late stage is behind "
            f"{'them' if behind != 1 else 'it'}, with nothing overdue now. The late table lists "
            f"{'them' if behind != 1 else 'it'} ('… was late')."
        )
    if data.empty:
        none_yet("No open order is late or at risk at a stage now.")
        return
    order = page.config.file.processes.get("order")
    stages = [stage_label(s.name) for s in order.stages] if order else []
    heatmap = charts.stage_heatmap(data.assign(stage=data["stage"].map(stage_label)), stages)
    st.plotly_chart(heatmap, key="heatmap")


def _throughput(page: Page) -> None:
    st.subheader("Orders started, completed and open (last 48 h, UTC)")
    data = q.throughput(page.store, page.now - timedelta(hours=48), page.now + timedelta(seconds=1))
    if data.empty:
        none_yet("No orders started or completed in the last 48 hours.")
        return
    st.plotly_chart(charts.throughput(data, q.open_count(page.store)), key="throughput")


if __name__ == "__main__":
    render()
