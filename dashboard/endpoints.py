"""Endpoints: per system and endpoint, how much traffic, how many errors and how slow — failing ones first."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from actions.telemetry import SYSTEM
from dashboard import charts, circuits
from dashboard.fmt import age
from dashboard.widgets import Page, none_yet, prepare
from syncwatch.model import partner_hosts
from syncwatch.redact import mask_emails
from syncwatch.store import queries as q

WINDOWS = {"last hour": timedelta(hours=1), "last 6 h": timedelta(hours=6), "last 24 h": timedelta(hours=24)}
SICK_ERROR_RATE = 0.05  # above this share of errors an endpoint is unhealthy
SLOW_P95_MS = 2_000
ACTIONS_SYSTEM = SYSTEM  # the service.name of syncwatch's own calls to partners
HEALTH_ORDER = {"failing": 0, "recovering": 1, "degraded": 2, "healthy": 3}
QUIET_BEFORE_RECOVERING = timedelta(minutes=5)  # without a failure, and answered since: not flapping


def render() -> None:
    page = prepare("Endpoints")
    if page is None:
        return
    window = WINDOWS[st.segmented_control("Window", list(WINDOWS), default="last hour", required=True)]
    circuits.paused_caption(circuits.held(page))  # a partner failing here may have its automatic retries paused
    since, until = page.now - window, page.now + timedelta(seconds=1)
    stats = q.endpoint_stats(page.store, since, until)
    if stats.empty:
        none_yet("No requests in this window; choose a longer one.")
        return
    table = health_table(stats, window, page)
    systems = ["all systems", *sorted(table["system"].unique())]
    pick, echoes = st.columns([2, 3], vertical_alignment="bottom")
    system = pick.selectbox("System", systems)
    echoed = echoes_of_own_rows(table)
    help_text = (
        f"{int(echoed.sum())} rows are callers' views of endpoints whose systems report them too, and saw them "
        "no worse: the same calls from the other end. A caller that saw an endpoint worse keeps its row."
    )
    if not echoes.toggle("Callers' views of endpoints that report themselves", key="echoes", help=help_text):
        table = table[~echoed]
    shown = table if system == "all systems" else table[table["system"] == system]
    internal = ["reported by", "peer", "gateway", "logged"]
    st.dataframe(shown.drop(columns=internal), hide_index=True, column_config=_columns())
    st.caption(
        f"Failing: an error rate over {SICK_ERROR_RATE:.0%} (no answer, or 5xx); recovering: failing in this "
        "window, but no failure for 5 minutes and answered since; degraded: a 429, "
        f"over {SICK_ERROR_RATE:.0%} refused (4xx), "
        f"or over 5 in 100 calls slower than {SLOW_P95_MS / 1000:g} s."
    )
    if shown["seen by"].ne("").any():
        ours = (
            f" Rows seen by {ACTIONS_SYSTEM} are its own actions' calls (retries, reroutes, lookups),"
            " not syncwatch failing."
            if shown["seen by"].eq(ACTIONS_SYSTEM).any()
            else ""
        )
        st.caption(
            "A row 'seen by' a caller counts that caller's calls as it saw them: an error there is the called "
            f"system's answer, so the row is the called system's.{ours}"
        )
    _timeline(page, shown, since, until)


def echoes_of_own_rows(table: pd.DataFrame) -> pd.Series:
    """Rows a caller saw of an endpoint whose system reports it too, and that the caller saw no worse:
    the same calls from the other end, which would make one failing endpoint read as three. A caller
    that saw it worse (timeouts the system never logged) keeps its row."""
    rank = table["health"].map(HEALTH_ORDER)
    own = rank[table["seen by"] == ""].groupby([table["system"], table["endpoint"]]).min()
    keys = list(zip(table["system"], table["endpoint"], strict=True))
    reported = pd.Series([own.get(key) for key in keys], index=table.index, dtype="float")
    return (table["seen by"] != "") & reported.notna() & (rank >= reported)


def health_table(stats: pd.DataFrame, window: timedelta, page: Page) -> pd.DataFrame:
    """Rates, latency and health per endpoint, failing endpoints first. An endpoint fails when it does
    not answer or answers 5xx. A 429 is the partner asking for a pause, which the retry policy honours,
    and a 4xx refusal (an unknown SKU) is the data's problem: both degrade it, neither fails it. One
    that has not failed for five minutes and answered since is recovering, not failing for the rest of
    the window; one that fails and answers by turns is failing."""
    failed = stats["failed"]
    error_rate = failed / stats["requests"]
    health = pd.Series("healthy", index=stats.index)
    refusing = stats["rejected"] / stats["requests"] > SICK_ERROR_RATE
    health[(stats["p95_ms"] > SLOW_P95_MS) | (stats["throttled"] > 0) | refusing] = "degraded"
    last_failed = pd.to_datetime(stats["last_failed_at"], utc=True)
    answering = (pd.to_datetime(stats["last_ok_at"], utc=True) > last_failed) & (
        last_failed <= pd.Timestamp(page.now) - QUIET_BEFORE_RECOVERING
    )
    health[(error_rate > SICK_ERROR_RATE) & answering] = "recovering"
    health[(error_rate > SICK_ERROR_RATE) & ~answering] = "failing"
    hosts = partner_hosts(page.config.file.partners)
    called = [hosts.get(peer, peer) if peer else None for peer in stats["peer"]]
    answered = [c if c and c != s else s for c, s in zip(called, stats["system"], strict=True)]
    table = pd.DataFrame(
        {
            "health": health,
            "system": answered,
            "endpoint": stats["operation"],
            # What makes it unhealthy comes first, in view on a laptop; who saw it, after.
            "error rate": error_rate,
            "errors": failed,
            "refused": stats["rejected"],
            "429s": stats["throttled"],
            "p95 ms": stats["p95_ms"],
            "requests": stats["requests"],
            "seen by": [s if a != s else "" for a, s in zip(answered, stats["system"], strict=True)],
            "reported by": stats["system"],
            "peer": stats["peer"],
            "gateway": stats["gateway"],
            "logged": stats["logged"],
            "requests/min": stats["requests"] / (window.total_seconds() / 60),
            "p50 ms": stats["p50_ms"],
            "last error": stats["last_error"].astype("string").fillna("").map(mask_emails),
            "last error ago": [age(t, page.now) for t in stats["last_error_at"]],
        }
    )
    # A system calling its own endpoint (the ERP allocating its order over HTTP) reports the calls from
    # both ends under its own name: one row, the end that saw more of them.
    table = table.sort_values("requests", ascending=False, kind="stable")
    table = table.drop_duplicates(["system", "endpoint", "seen by", "gateway"])
    order = table["health"].map(HEALTH_ORDER)
    return table.assign(_o=order).sort_values(["_o", "error rate"], ascending=[True, False]).drop(columns="_o")


def _columns() -> dict[str, object]:
    return {
        "system": st.column_config.TextColumn(help="The system whose endpoint it is: the one called"),
        "seen by": st.column_config.TextColumn(
            help="Who recorded these calls: the caller (or a gateway in between); empty: the called system itself"
        ),
        "429s": st.column_config.NumberColumn(help="Answers asking the caller to slow down (HTTP 429)"),
        "p95 ms": st.column_config.NumberColumn(format="%.0f", help="95 of 100 calls answered within this time"),
        "requests/min": st.column_config.NumberColumn(format="%.2f"),
        "error rate": st.column_config.NumberColumn(
            format="percent", help="Calls not answered or answered 5xx, of all calls; 429s and refusals are apart"
        ),
        "errors": st.column_config.NumberColumn(help="Calls not answered, or answered 5xx"),
        "refused": st.column_config.NumberColumn(
            help="Calls answered 4xx (other than 429): the request's data was refused, so the endpoint works; "
            "the Exceptions page has them as data to fix"
        ),
        "p50 ms": st.column_config.NumberColumn(format="%.0f"),
    }


def _timeline(page: Page, table: pd.DataFrame, since: object, until: object) -> None:
    seen = table["seen by"].map(lambda by: f" (seen by {by})" if by else "")
    labels = table["system"] + " · " + table["endpoint"] + seen
    rows = zip(table["reported by"], table["endpoint"], table["peer"], table["gateway"], table["logged"], strict=True)
    endpoints = dict(zip(labels, rows, strict=True))
    chosen = st.selectbox("Timeline of", list(endpoints))
    if not chosen:
        return
    system, endpoint, peer, gateway, logged = endpoints[chosen]
    data = q.endpoint_timeline(page.store, system, endpoint, since, until, peer, gateway, logged)  # type: ignore[arg-type]
    st.plotly_chart(charts.endpoint_timeline(data), key="endpoint_timeline")


if __name__ == "__main__":
    render()
