"""Endpoints: per system and endpoint, how much traffic, how many errors and how slow — failing ones first."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from actions.telemetry import SYSTEM
from dashboard import charts
from dashboard.fmt import age
from dashboard.widgets import Page, none_yet, prepare
from syncwatch.redact import mask_emails
from syncwatch.store import queries as q

WINDOWS = {"last hour": timedelta(hours=1), "last 6 h": timedelta(hours=6), "last 24 h": timedelta(hours=24)}
SICK_ERROR_RATE = 0.05  # above this share of errors an endpoint is unhealthy
SLOW_P95_MS = 2_000
ACTIONS_SYSTEM = SYSTEM  # the service.name of syncwatch's own calls to partners


def render() -> None:
    page = prepare("Endpoints")
    if page is None:
        return
    window = WINDOWS[st.segmented_control("Window", list(WINDOWS), default="last hour", required=True)]
    since, until = page.now - window, page.now + timedelta(seconds=1)
    stats = q.endpoint_stats(page.store, since, until)
    if stats.empty:
        none_yet("No requests in this window; choose a longer one.")
        return
    table = health_table(stats, window, page)
    systems = ["all systems", *sorted(table["system"].unique())]
    system = st.selectbox("System", systems)
    shown = table if system == "all systems" else table[table["system"] == system]
    st.dataframe(shown, hide_index=True, column_config=_columns())
    if (shown["system"] == ACTIONS_SYSTEM).any():
        st.caption(
            f"Rows of {ACTIONS_SYSTEM} are the calls its own actions (retries, reroutes, lookups) made to partners:"
            " an error there is the partner's answer to that call, not syncwatch failing."
        )
    _timeline(page, shown, since, until)


def health_table(stats: pd.DataFrame, window: timedelta, page: Page) -> pd.DataFrame:
    """Rates, latency and health per endpoint, failing endpoints first."""
    error_rate = stats["errors"] / stats["requests"]
    health = pd.Series("healthy", index=stats.index)
    health[(stats["p95_ms"] > SLOW_P95_MS) | (stats["throttled"] > 0)] = "degraded"
    health[error_rate > SICK_ERROR_RATE] = "failing"
    table = pd.DataFrame(
        {
            "health": health,
            "system": stats["system"],
            "endpoint": stats["operation"],
            "requests/min": stats["requests"] / (window.total_seconds() / 60),
            "error rate": error_rate,
            "errors": stats["errors"],
            "429s": stats["throttled"],
            "p50 ms": stats["p50_ms"],
            "p95 ms": stats["p95_ms"],
            "last error": stats["last_error"].astype("string").fillna("").map(mask_emails),
            "last error ago": [age(t, page.now) for t in stats["last_error_at"]],
        }
    )
    order = table["health"].map({"failing": 0, "degraded": 1, "healthy": 2})
    return table.assign(_o=order).sort_values(["_o", "error rate"], ascending=[True, False]).drop(columns="_o")


def _columns() -> dict[str, object]:
    return {
        "system": st.column_config.TextColumn(help="The system that reported the call: the caller, or the one called"),
        "requests/min": st.column_config.NumberColumn(format="%.2f"),
        "error rate": st.column_config.NumberColumn(format="percent"),
        "p50 ms": st.column_config.NumberColumn(format="%.0f"),
        "p95 ms": st.column_config.NumberColumn(format="%.0f"),
    }


def _timeline(page: Page, table: pd.DataFrame, since: object, until: object) -> None:
    labels = list(table["system"] + " · " + table["endpoint"])
    chosen = st.selectbox("Timeline of", labels)
    if not chosen:
        return
    system, endpoint = chosen.split(" · ", 1)
    data = q.endpoint_timeline(page.store, system, endpoint, since, until)  # type: ignore[arg-type]
    st.plotly_chart(charts.endpoint_timeline(data), key="endpoint_timeline")


if __name__ == "__main__":
    render()
