"""What every page starts with: the store, the viewer and the clock, or the empty state that says what to do."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import context
from dashboard.context import Viewer
from dashboard.fmt import when
from syncwatch.config import Config
from syncwatch.store import Store
from syncwatch.store import queries as q


@dataclass(frozen=True)
class Page:
    store: Store
    config: Config
    viewer: Viewer
    now: datetime


def prepare(title: str, live: bool = False) -> Page | None:
    """Draw the title; return what the page needs, or None after showing how to get data in. A
    ``live`` page refreshes itself, and says how old its data is each time (``refreshed``)."""
    st.title(title)
    config = context.config()
    store = context.store()
    if store is None:
        return None
    if not q.has_data(store):
        how_to_start(config)
        return None
    now = context.clock(store)
    if not live:
        st.caption(f"Data as of {when(now)}")
    _behind(store, config)
    return Page(store, config, context.viewer(), now)


def refreshed(page: Page, every_s: int) -> Page:
    """``page`` as of this refresh of a live page: SLA times, ages and windows move with the clock."""
    now = context.clock(page.store)
    st.caption(f"Data as of {when(now)} · refreshes every {every_s} s")
    return replace(page, now=now)


def _behind(store: Store, config: Config) -> None:
    """Say so when what arrived is not correlated yet: SLA states and queues would look current
    while leaving it out (the correlator stopped, or `syncwatch ingest` ran without `serve`)."""
    backlog = store.correlation_backlog()
    if backlog.overdue(config.correlate_interval_s, datetime.now(UTC)):
        st.warning(
            f"{backlog.describe()}, so these pages leave them out. `syncwatch serve` correlates every "
            f"{config.correlate_interval_s:g} s; if it is not running, start it or run `syncwatch correlate`."
        )


def how_to_start(config: Config) -> None:
    """The empty state of every page on a fresh database: how to point a system at syncwatch."""
    base = f"http://{config.host}:{config.port}"
    st.info("Nothing has arrived yet: syncwatch fills this page from what your systems report.")
    st.markdown(
        f"""
**Point a system at syncwatch**

1. Start the collector and its scheduler: `syncwatch serve` (it listens on `{base}`).
2. OpenTelemetry traces and logs: in each service set `OTEL_EXPORTER_OTLP_ENDPOINT={base}`
   and `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf` (or `http/json`).
3. Business events: POST CloudEvents to `{base}/v1/events`; partner webhooks to `{base}/v1/webhooks/NAME`.
4. Files (access logs, OTLP JSON, CloudEvents JSON lines): `syncwatch ingest PATH…` once,
   or list them under `[[tailers]]` in the config for `serve` to follow.

Just looking? `syncwatch demo` starts a simulated network with a week of sample data.
"""
    )


def none_yet(message: str) -> None:
    """An empty section on a page that has data elsewhere: say so in one line, not with an empty chart."""
    st.caption(message)


def open_on_select(
    table: pd.DataFrame, targets: Sequence[str], page: str, param: str, key: str, **options: Any
) -> None:
    """A table whose row, once selected, opens ``page`` with ``?param=`` that row's target. In-app
    navigation keeps the session: a plain link loads the app afresh (a new tab, for a table's link
    column) and a signed-in person would have to sign in again."""
    event = st.dataframe(table, hide_index=True, on_select="rerun", selection_mode="single-row", key=key, **options)
    st.caption("Select a row to open it.")
    rows = event.selection.rows  # type: ignore[attr-defined]
    if rows:
        st.switch_page(page, query_params={param: targets[rows[0]]})
