"""Transaction search: any business key to the whole story — stages, SLA, exceptions, actions, every observation."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import streamlit as st

from dashboard import actions_panel, charts
from dashboard.fmt import category_label, fault_text, money, no_partner, promise, sla_label, sla_time, when
from dashboard.masking import literal
from dashboard.widgets import Page, none_yet, open_on_select, prepare
from syncwatch.model import count, stage_label
from syncwatch.redact import mask_emails
from syncwatch.store import queries as q

LINKED_KEY = "search_key_in_link"  # the ?key= this page last saw or wrote


def render() -> None:
    page = prepare("Transaction search")
    if page is None:
        return
    # A key another page or a link brings (?key=…) fills the box when it is new; what is typed
    # after that wins, until another page brings a different key.
    linked = st.query_params.get("key", "")
    if linked != st.session_state.get(LINKED_KEY):
        st.session_state["search_key"] = st.session_state[LINKED_KEY] = linked
    key = st.text_input(
        "Any key",
        key="search_key",
        placeholder="marketplace order 113-…, PO-…, SO-…, shipment SH-…, tracking number, RMA, customer C-…",
    ).strip()
    st.session_state[LINKED_KEY] = key
    if key:
        st.query_params["key"] = key
    elif "key" in st.query_params:
        del st.query_params["key"]  # an empty box leaves no ?key= behind
    if not key:
        st.caption("Type an identifier any system used for the order; the result shows what every system saw.")
        return
    found = q.find_transactions(page.store, key)
    if found.empty:
        orders = q.customer_transactions(page.store, key, CUSTOMER_ROWS)
        if orders.empty:
            _similar(page, key)
        else:
            _customer(page, key, orders)
        return
    tid = found["id"].iloc[0]
    if len(found) > 1:
        tid = st.selectbox("Several transactions carry this key", list(found["id"]))
    _transaction(page, tid)


SIMILAR_SHOWN = 10
CUSTOMER_ROWS = 200


def _customer(page: Page, customer: str, orders: pd.DataFrame) -> None:
    """The customer's orders, newest first: one is picked by the row, as a key would open it."""
    if len(orders) == CUSTOMER_ROWS:
        st.subheader(f"Customer {literal(customer.upper())}: the newest {CUSTOMER_ROWS} orders (there are more)")
    else:
        st.subheader(f"Customer {literal(customer.upper())}: {count(len(orders), 'order')}, newest first")
    table = pd.DataFrame(
        {
            "transaction": orders["id"],
            "started": orders["started_at"].map(when),
            "status": orders["status"],
            "SLA": orders["sla_state"].map(sla_label),
            "stage": orders["current_stage"].map(lambda s: stage_label(s) if isinstance(s, str) else "—"),
            "channel": orders["channel"].fillna(q.NO_CHANNEL),
            "value": orders["order_value"].map(money),
        }
    )
    open_on_select(table, list(orders["id"]), "search.py", "key", key="customer_orders")


def _similar(page: Page, key: str) -> None:
    """No key is exactly ``key``: offer the keys that contain it, whatever their case (po-451453,
    or 451453 for PO-451453), so a typo in case or a missing prefix is one click from the order."""
    similar = q.similar_keys(page.store, key, limit=SIMILAR_SHOWN + 1)  # one more tells that more exist
    if similar.empty:
        more = (
            ""
            if len(key) >= q.SIMILAR_FROM
            else f" Type {q.SIMILAR_FROM} characters or more to look for keys containing it."
        )
        st.info(f"No transaction carries a key like {literal(repr(key))}.{more}")
        return
    shown = similar.head(SIMILAR_SHOWN)
    more = f" The first {SIMILAR_SHOWN} are shown: type more of it to narrow them." if len(similar) > len(shown) else ""
    st.info(f"No key is exactly {literal(repr(key))}; these contain it.{more}")
    similar = shown
    table = pd.DataFrame(
        {
            "key": similar["value"],
            "type": similar["key_type"].str.replace("_", " "),
            "transaction": similar["transaction_id"],
        }
    )
    open_on_select(table, list(similar["value"]), "search.py", "key", key="similar_keys")


def _context(row: dict, now: datetime) -> list[tuple[str, str]]:
    """Who and what the transaction is about, in one line under its state; the customer's promise
    apart from the SLA, which an internal step alone can breach."""
    return [
        ("Channel", row["channel"] or q.NO_CHANNEL),
        ("Partner", row["partner"] or no_partner(row["id"])),
        ("Customer", row["customer"] or "—"),
        ("Value", money(row["order_value"]) or "—"),
        ("Customer promise", promise(row["stages"], row["promised_at"], now) or "—"),
    ]


def _transaction(page: Page, tid: str) -> None:
    row = q.transaction_row(page.store, tid)
    if row is None:
        return
    st.header(literal(tid))
    # Late reads red, on time green; an arrow would say "up", which lateness is not.
    late = "inverse" if row["sla_state"] in ("breached", "at_risk") else "normal"
    cols = st.columns(2)
    cols[0].metric(
        "SLA",
        sla_label(row["sla_state"]),
        sla_time(row["sla_state"], row["due_at"], page.now) or None,
        delta_color=late,
        delta_arrow="off",
    )
    fault = fault_text(row["sla_state"], row["stage_at_fault"], row["due_at"], page.now)
    cols[1].metric("Stage", stage_label(row["current_stage"]) or "—", fault, delta_color="inverse", delta_arrow="off")
    st.markdown(" · ".join(f"**{label}** {literal(value)}" for label, value in _context(row, page.now)))
    keys = q.transaction_key_list(page.store, tid)
    starts = page.config.file.processes[row["type"]].starts_with if row["type"] in page.config.file.processes else []
    if starts and not keys["key_type"].isin(starts).any():
        labels = ", ".join(page.config.file.key_types[k].label for k in starts)
        kind = row["type"].replace("_", " ")
        st.warning(
            f"None of the keys every {kind} starts with ({labels}): what is below was reported under other keys "
            f"only. Either the {kind}'s own calls and events have not arrived, or a key rule misses them "
            "(`syncwatch stats` lists what links to nothing). It stays open until they link."
        )
    st.dataframe(
        pd.DataFrame({"identifier": keys["value"], "kind": keys["key_type"].str.replace("_", " ")}), hide_index=True
    )
    st.subheader("Stages")
    st.dataframe(stage_table(row["stages"]), hide_index=True)
    if row.get("lines"):
        _lines(row["lines"])
    _exceptions(page, tid)
    st.subheader("Every call, log line and event, across systems")
    observations = q.transaction_observations(page.store, tid)
    if observations.empty:
        none_yet("No call, log line or event is linked to it yet.")
    else:
        st.plotly_chart(charts.waterfall(observations), key="search_waterfall")
        with st.expander(f"{count(len(observations), 'observation')}: each call, log line and event"):
            st.dataframe(observation_table(observations), hide_index=True)


def observation_table(observations: pd.DataFrame) -> pd.DataFrame:
    """What each system reported, as a person reads it: when, who, what, how it went and how long;
    the ids that tie it to a trace stay at the end for whoever follows it into tracing tools."""
    start = pd.to_datetime(observations["start_time"], utc=True)
    took = (pd.to_datetime(observations["end_time"], utc=True) - start).dt.total_seconds() * 1000
    status = observations["status_code"].map(lambda code: "" if pd.isna(code) else f" {int(code)}")
    return pd.DataFrame(
        {
            "when": start.dt.strftime("%a %d %b %H:%M:%S.%f").str.slice(0, -3) + " UTC",
            "system": observations["system"],
            "what": observations["kind"].map(charts.KIND_NAMES).fillna(observations["kind"]),
            "operation": observations["operation"],
            "result": observations["outcome"].map(charts.OUTCOME_NAMES).fillna(observations["outcome"]) + status,
            "took (ms)": took.round().astype("Int64"),
            "error": observations["error_message"].fillna("").map(mask_emails),
            "trace": observations["trace_id"].fillna(""),
        }
    )


def stage_table(stages: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "stage": [stage_label(s.get("name")) for s in stages],
            "reached": [when(pd.to_datetime(s.get("reached_at"))) if s.get("reached_at") else "" for s in stages],
            "due": [when(pd.to_datetime(s.get("due_at"))) if s.get("due_at") else "" for s in stages],
            "SLA": [sla_label(s.get("sla_state")) for s in stages],
        }
    )


def _lines(lines: dict) -> None:
    """Which lines went in which shipment: a split or backordered order ships in parts."""
    st.subheader("Lines")
    st.caption(lines_summary(lines))
    if lines.get("shipments"):
        st.dataframe(shipment_table(lines["shipments"]), hide_index=True)


def lines_summary(lines: dict) -> str:
    ordered, shipped, outstanding = lines.get("ordered"), lines.get("shipped", 0), lines.get("outstanding")
    if ordered is None and not shipped:
        return "No system said which lines the order holds, nor which lines its shipments carried."
    if ordered is None:
        return f"{count(shipped, 'line')} shipped; no system said how many lines the order holds."
    if outstanding is None:
        return f"{count(ordered, 'line')} ordered; a shipment did not say which lines it carried."
    said = f"{shipped} of {count(ordered, 'line')} shipped"
    if not outstanding:
        return said + "."
    backordered = lines.get("backordered") or []
    due = lines.get("backorder_due")
    if backordered:
        verb = "is" if len(backordered) == 1 else "are"
        expected = f", expected by {when(pd.to_datetime(due))}" if due else ""
        said += f"; {', '.join(backordered)} {verb} backordered{expected}"
    rest = outstanding - len(backordered)
    if rest > 0:
        said += f"; {rest} {'more ' if backordered else ''}not shipped yet"
    return said + "."


def shipment_table(shipments: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "shipped": [when(pd.to_datetime(s.get("at"))) for s in shipments],
            "shipment": [s.get("reference") for s in shipments],
            "from": [s.get("system") for s in shipments],
            "lines": [
                ", ".join(f"{line['sku']} × {line['qty']}" for line in s["lines"]) if s.get("lines") else "not stated"
                for s in shipments
            ],
        }
    )


def _exceptions(page: Page, tid: str) -> None:
    exceptions = q.transaction_exceptions(page.store, tid)
    st.subheader(f"Exceptions ({len(exceptions)})")
    if exceptions.empty:
        none_yet("None: no step has failed so far.")
        return
    shown = pd.DataFrame(
        {
            "opened": exceptions["opened_at"].map(when),
            "category": exceptions["category"].map(category_label),
            "status": exceptions["status"],
            "failing system": exceptions["system"],
            "stage": exceptions["stage"].map(stage_label),
            "summary": exceptions["summary"],
            "assignee": exceptions["assignee"].fillna(""),
            "resolved": exceptions["resolved_at"].map(when),
        }
    )
    open_on_select(shown, list(exceptions["id"]), "exceptions.py", "exception", key="transaction_exceptions")
    actions = q.transaction_actions(page.store, tid)
    if not actions.empty:
        st.subheader("Actions")
        st.dataframe(actions_panel.history(actions), hide_index=True)


if __name__ == "__main__":
    render()
