"""Exceptions: the queue an agent works, and one broken order understood and fixed on one screen."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta

import pandas as pd
import streamlit as st

from actions import api
from dashboard import actions_panel, charts, circuits
from dashboard.fmt import SLA_LABELS, age, category_label, money, no_partner, promise, sla_label, sla_time, when
from dashboard.masking import literal, mask, masked_text
from dashboard.widgets import Page, none_yet, prepare
from syncwatch.config import Config
from syncwatch.model import partners_of_kind, stage_label
from syncwatch.store import queries as q

STATUSES = ("open", "retrying", "resolved", "ignored")
CATEGORIES = ("validation", "partner_unavailable", "throttled", "timeout", "stuck", "duplicate_notice", "dead_lettered")
AGES = {
    "any time": (None, None),
    "last hour": (timedelta(hours=1), None),
    "last 24 h": (timedelta(hours=24), None),
    "older than 24 h": (None, timedelta(hours=24)),
    "older than 3 days": (None, timedelta(days=3)),
}
ANYONE, UNASSIGNED, ME = "anyone", "unassigned", "me"
QUEUE_KEY = "exception_queue"
CHOOSER, LINKED = "open_exception", "open_exception_linked"  # the chooser, and the ?exception= it last matched
TICKED = "exception_queue_ticked"  # the row ticked last, and the exception it stood for then
SHOWN = "exception_queue_shown"  # the queue's exception ids as last drawn, in their order
QUEUE_GENERATION = "exception_queue_generation"  # bumped to draw the table afresh, without a misplaced tick
QUEUE_VIEWER = "exception_queue_viewer"  # who the filters were last drawn for
PAGE_ROWS = 200  # queue rows drawn at once; the rest are a choice of rows away


def render() -> None:
    page = prepare("Exceptions")
    if page is None:
        return
    filters, order, age = _filters(page)
    total = q.exception_count(page.store, filters)
    first = _first_row(total)
    queue = q.exception_queue(page.store, filters, PAGE_ROWS, order, first)
    paused = circuits.held(page)  # partners whose automatic retries are paused while they are down
    circuits.paused_caption(paused)
    _queue(page, queue, total, order, filters.key, first)
    if not queue.empty:
        chosen = _choose(queue)
        if chosen:
            _detail(page, chosen, paused)
    actions_panel.bulk(page, filters, total, age)


def _stored_names_as_labels(name: str, values: list[str], label: Callable[[str], str]) -> None:
    """The address keeps a filter as the page shows it (?category=dead+lettered); a link written
    with the stored name the CLI and the export use (?category=dead_lettered) was dropped without
    a word, and the queue showed everything. Such a link now sets the filter (the widget's key),
    which then writes the address its way."""
    given = st.query_params.get_all(name)
    if not set(given) & set(values):
        return
    wanted = set(given)
    st.session_state[name] = [value for value in values if value in wanted or label(value) in wanted]


def _unless_set(key: str, default: list[str]) -> list[str] | None:
    return None if key in st.session_state else default


def _filters(page: Page) -> tuple[q.QueueFilter, str, str]:
    """The queue's filter (bulk actions take the same), the order its first rows come in, and the
    age chosen (its times move with the clock; the choice does not)."""
    options = filter_options(page.config)
    # Every filter lives in the address too (bind): a reload, the Back button or a link a lead
    # sends keeps the queue as it was filtered.
    url = {"bind": "query-params"}
    search, sort = st.columns([3, 1])
    key = search.text_input(
        "Search by any business key",
        placeholder="marketplace order, PO, SO-…, shipment, tracking number",
        key="find",  # not "key": Transaction search's ?key= would be taken for this box and dropped
        **url,
    )
    order = sort.selectbox(
        "Sort by",
        list(q.QUEUE_ORDERS),
        help="Sorted by the database: the queue lists its first rows",
        key="order",
        **url,
    )
    _stored_names_as_labels("category", options["category"], category_label)
    _stored_names_as_labels("sla", list(SLA_LABELS), sla_label)
    cols = st.columns(4)
    statuses = cols[0].multiselect("Status", STATUSES, default=["open", "retrying"], key="status", **url)
    categories = cols[1].multiselect("Category", options["category"], format_func=category_label, key="category", **url)
    scope = page.config.file.users[page.viewer.actor].scope if page.viewer.actor in page.config.file.users else None
    own_partners = [p for p in (scope.partners if scope else ()) if p in options["partner"]]
    own_channels = [c for c in (scope.channels if scope else ()) if c in options["channel"]]
    previous = st.session_state.get(QUEUE_VIEWER)
    st.session_state[QUEUE_VIEWER] = page.viewer.actor
    if previous is not None and previous != page.viewer.actor:  # the demo's role switch: the new person's scope
        st.session_state["partner"], st.session_state["channel"] = own_partners, own_channels
        actions_panel.forget_drafts()  # the last person's typed note and last outcome are not theirs
    # A default only where the state holds none: given both (the role switch sets the state), Streamlit
    # logs a warning with a stack trace on every switch.
    partners = cols[2].multiselect(
        "Partner", options["partner"], default=_unless_set("partner", own_partners), key="partner", **url
    )
    channels = cols[3].multiselect(
        "Channel", options["channel"], default=_unless_set("channel", own_channels), key="channel", **url
    )
    cols = st.columns(4)
    sla = cols[0].multiselect("SLA state", list(SLA_LABELS), format_func=sla_label, key="sla", **url)
    assignee = cols[1].selectbox("Assignee", [ANYONE, UNASSIGNED, ME, *options["assignee"]], key="assignee", **url)
    opened = cols[2].selectbox("Opened", list(AGES), key="opened", **url)
    # A link from Operations' callout or an endpoint alert names the failing system: ?system=erp.
    linked = [name for name in st.query_params.get_all("system") if name]
    # The configured partners, and any other system with active exceptions (a service no partner names).
    failing = q.failing_systems(page.store)["system"].dropna()
    offered = sorted({*options["system"], *failing, *linked})
    systems = cols[3].multiselect("Failing system", offered, key="system", **url)
    if own_partners or own_channels:
        st.caption(
            f"The queue opens on your scope ({', '.join([*own_channels, *own_partners])}): you act only there. "
            "Clear the Channel and Partner filters to read the rest."
        )
    newer, older = AGES[opened]
    filters = q.QueueFilter(
        statuses=tuple(statuses),
        categories=tuple(categories),
        systems=tuple(systems),
        partners=tuple(partners),
        channels=tuple(channels),
        sla_states=tuple(sla),
        assignee={ANYONE: None, UNASSIGNED: "", ME: page.viewer.actor}.get(assignee, assignee),
        opened_after=page.now - newer if newer else None,
        opened_before=page.now - older if older else None,
        key=key.strip() or None,
    )
    return filters, order, opened


def filter_options(config: Config) -> dict[str, list[str]]:
    """What the filters offer, from the config: no query, and the same choices whatever the queue holds."""
    partners = config.file.partners
    return {
        "category": list(CATEGORIES),
        "system": sorted(partners),
        "partner": partners_of_kind(partners, "wms", "3pl"),
        "channel": partners_of_kind(partners, "marketplace"),
        "assignee": sorted(n for n, u in config.file.users.items() if u.role != "executive"),
    }


def _first_row(total: int) -> int:
    """Where the shown rows start: every matching exception is in reach, PAGE_ROWS at a time (the
    choice starts afresh at the first rows when the number matching changes)."""
    if total <= PAGE_ROWS:
        return 0
    starts = range(0, total, PAGE_ROWS)
    labels = [f"{start + 1:,}–{min(start + PAGE_ROWS, total):,}" for start in starts]
    chosen = st.selectbox(f"Rows shown, of {total:,}", labels, width=220)
    return starts[labels.index(chosen)]


def _queue(page: Page, queue: pd.DataFrame, total: int, order: str, key: str | None, first: int) -> None:
    if queue.empty:
        st.info("No exception matches these filters. Clear one, or look the order up in Transaction search.")
        similar = q.similar_keys(page.store, key, limit=5) if key else pd.DataFrame()
        for value in similar.get("value", []):  # a key typed in another case, or without its prefix
            st.page_link("search.py", label=f"Open {value}", icon=":material/search:", query_params={"key": value})
        return
    shown = f"{first + 1:,}–{first + len(queue):,} of {total:,} ({order})" if total > len(queue) else f"{total:,}"
    st.subheader(f"Queue: {shown} exception{'s' if total != 1 else ''} matching")
    table = pd.DataFrame(
        {
            "age": [age(t, page.now) for t in queue["opened_at"]],
            "category": queue["category"].map(category_label),
            "order": queue["transaction_id"],
            "status": queue["status"],
            "system": queue["system"],
            "summary": queue["summary"],
            "SLA": queue["sla_state"].map(sla_label),
            "time left": [sla_time(s, d, page.now) for s, d in zip(queue["sla_state"], queue["due_at"], strict=True)],
            "channel": queue["channel"].fillna("—"),
            "partner": [
                p if isinstance(p, str) else no_partner(tid)
                for p, tid in zip(queue["partner"], queue["transaction_id"], strict=True)
            ],
            "customer": queue["customer"].fillna(""),
            "value": queue["order_value"].map(money),
            "assignee": queue["assignee"].fillna("nobody"),
            "attempts": queue["attempts"],
        }
    )
    ids = [str(i) for i in queue["id"]]
    shown = st.session_state.get(SHOWN, ids)
    st.session_state[SHOWN] = ids
    # Read before the table is drawn: when the rows moved under the tick, the table is drawn as a new
    # widget (a new key), so the browser drops the tick too, and this run's click (Add note) still acts
    # on the exception that is open.
    generation = st.session_state.get(QUEUE_GENERATION, 0)
    tick, opened, untick = follow_tick(st.session_state.get(TICKED), shown, ids, _ticked(f"{QUEUE_KEY}_{generation}"))
    if untick:
        generation += 1
        st.session_state[QUEUE_GENERATION] = generation
    st.session_state[TICKED] = tick
    if opened:
        st.query_params["exception"] = opened  # opened as a link from another page opens it
    st.dataframe(
        table,
        hide_index=True,
        height=min(420, 38 + 35 * len(table)),
        on_select="rerun",
        selection_mode="single-row",
        key=f"{QUEUE_KEY}_{generation}",
    )
    st.caption("Select a row to open it below.")


def _ticked(key: str) -> list[int]:
    """The rows the browser says are ticked in the queue table (its state, before it is drawn)."""
    state = st.session_state.get(key)
    try:
        return list(state["selection"]["rows"]) if state is not None else []
    except (KeyError, TypeError):
        return []


def follow_tick(
    tick: tuple[int, str] | None, shown: list[str], ids: list[str], rows: list[int]
) -> tuple[tuple[int, str] | None, str | None, bool]:
    """What a ticked row means: (the tick to remember as (row, exception), the exception to open or
    None to leave the open one, whether to clear the tick).

    A tick is a row number, sent again with every later click (a button's too). So it opens an
    exception only when it changes, and then the one that row showed when it was clicked; when new
    or resolved exceptions move the rows under a tick, the tick is cleared rather than left on
    another exception, and the open one stays open."""
    if not rows:
        return None, None, False
    row = rows[0]
    if tick is not None and tick[0] == row:
        still = row < len(ids) and ids[row] == tick[1]
        return (tick, None, False) if still else (None, None, True)
    clicked = shown[row] if row < len(shown) else None
    if clicked is None:
        return None, None, True
    moved = row >= len(ids) or ids[row] != clicked
    return (None if moved else (row, clicked)), clicked, moved


def _untick() -> None:
    """The agent picked another exception in the chooser (or cleared it): a row still ticked for the
    last one is unticked by drawing the table as a new widget, as Streamlit offers no way to clear a
    selection. Left ticked, it contradicted the exception open, and a click on it only unticked it.
    A callback, as it runs before the table is drawn in the same run: no second run."""
    tick = st.session_state.get(TICKED)
    if tick is not None and tick[1] != st.session_state.get(CHOOSER):
        st.session_state[TICKED] = None
        st.session_state[QUEUE_GENERATION] = st.session_state.get(QUEUE_GENERATION, 0) + 1


def _choose(queue: pd.DataFrame) -> str | None:
    """The exception to open: picked here, or named in the link (?exception=ID) another page gave."""
    described = (
        queue["category"].map(category_label)
        + " · "
        + queue["transaction_id"]
        + " · "
        + queue["system"]
        + " · "
        + queue["summary"]
    )
    labels = dict(zip(queue["id"], described, strict=True))
    wanted = st.query_params.get("exception")
    ids = list(labels)
    if wanted and wanted not in labels:
        ids.insert(0, wanted)
        labels[wanted] = f"{wanted} (opened from a link or an earlier visit; not in this queue)"
    # Keyed, the chooser keeps its identity as the queue and the choice move; unkeyed, the index of
    # the last choice made it a new widget at each pick, so every other pick was dropped. The address
    # sets it only where a link or a row of the queue asked for another exception since.
    if wanted and wanted != st.session_state.get(LINKED):
        st.session_state[CHOOSER] = wanted
    chosen = st.selectbox(
        "Open an exception",
        ids,
        index=None,
        key=CHOOSER,
        on_change=_untick,
        format_func=lambda i: labels.get(i, i),
        placeholder="Choose one from the queue",
    )
    if chosen:
        st.query_params["exception"] = chosen
    st.session_state[LINKED] = chosen or wanted
    return chosen


def _detail(page: Page, exception_id: str, paused: dict[str, circuits.HeldCircuit]) -> None:
    row = q.exception_row(page.store, exception_id)
    if row is None:
        st.warning(
            f"There is no exception {literal(exception_id)} now. The correlator drops one that no longer "
            "applies (an overdue step that has since arrived, or a newer failure of the same step), and "
            "history is pruned after `retention_days`. Transaction search shows where its order stands."
        )
        return
    st.divider()
    st.header(literal(row["summary"]))
    left, right = st.columns(2)
    with left:
        _business_context(page, row)
    with right:
        _facts(page, row)
    history = q.exception_actions(page.store, exception_id)
    circuits.exception_note(page, row, history, paused)
    runbook = page.config.file.runbooks.get(row["category"], "No runbook for this category yet.")
    suggested = row["suggested_action"] or "none, see the runbook"
    st.info(f"**Runbook ({category_label(row['category'])}).** {runbook}\n\n**Suggested action:** {suggested}")
    recorded = api.recorded_body(page.store, row)  # the body may sit on the call's client span
    actions_panel.panel(page, row, recorded)
    _timeline(page, row)
    _payload(page, row, recorded)
    if not history.empty:
        st.subheader("History")
        st.dataframe(actions_panel.history(history), hide_index=True)


def _business_context(page: Page, row: dict) -> None:
    context = row.get("context") or {}
    partner = row["partner"] or context.get("partner") or no_partner(str(row["transaction_id"]))
    st.markdown(
        "\n".join(
            [
                f"- **Transaction:** {literal(row['transaction_id'])}",
                f"- **Channel:** {literal(row['channel'] or context.get('channel') or '—')}",
                f"- **Partner:** {literal(partner)}",
                f"- **Customer:** {literal(row['customer'] or context.get('customer') or '—')}",
                f"- **Order value:** {literal(money(row['order_value'] or context.get('order_value')) or '—')}",
                f"- **Customer promise:** {promise(row['stages'], row['promised_at'], page.now) or '—'}",
                f"- **SLA:** {_sla_line(row, page.now)}",
            ]
        )
    )
    st.page_link(
        "search.py",
        label="Open the transaction: every system's view of it",
        icon=":material/arrow_forward:",
        query_params={"key": row["transaction_id"]},
    )


def _sla_line(row: dict, now: datetime) -> str:
    """'Breached, late by 2 h', 'On track, 40 m left', 'Met': a breach with nothing pending (a
    stuck stage past its due, an order since completed) read 'Breached, nothing due'."""
    state = row["sla_state"]
    left = sla_time(state, row["due_at"], now)
    if not left and state in ("on_track", "at_risk"):
        left = "nothing due"
    return ", ".join(part for part in (sla_label(state), left) if part)


def _where(row: dict) -> str:
    """Who holds the order up, and where: an overdue stage, or a failing call and the stage it holds up."""
    if row["category"] == "stuck":
        return f"{literal(row['system'])}: stage {stage_label(row['stage'])} overdue"
    held = f", holding up {stage_label(row['stage'])}" if row["stage"] else ""
    return f"{literal(row['system'])} · {literal(row['endpoint'] or '—')}{held}"


def _facts(page: Page, row: dict) -> None:
    stuck = row["category"] == "stuck"
    facts = [
        f"- **Status:** {row['status']}",
        f"- **Category:** {category_label(row['category'])}",
        f"- **Failing:** {_where(row)}",
        # A stuck stage's exception dates from when the stage fell due, not from when it was noticed.
        f"- **{'Overdue since' if stuck else 'Opened'}:** {when(row['opened_at'])} "
        f"({age(row['opened_at'], page.now)} ago)",
    ]
    if not stuck:
        facts.append(f"- **Attempts seen:** {row['attempts']}")
        facts.append(f"- **Last seen:** {when(row['last_seen_at'])}")
    elif row["last_seen_at"] != row["opened_at"]:
        facts.append(f"- **Stage reached:** {when(row['last_seen_at'])}")  # the observation that resolved it
    else:
        facts.append("- **Seen since:** nothing: no call or event has reached the stage")  # the due time is no sighting
    facts.append(f"- **Assignee:** {row['assignee'] or 'nobody'}")
    st.markdown("\n".join(facts))


def _timeline(page: Page, row: dict) -> None:
    st.subheader("Across systems")
    data = q.transaction_observations(page.store, row["transaction_id"])
    if data.empty:
        none_yet("No call, log line or event is linked to this transaction yet.")
        return
    st.plotly_chart(charts.waterfall(data, row["observation_id"], row["opened_at"]), key="waterfall")


def _payload(page: Page, row: dict, recorded: dict | None) -> None:
    failing = q.observation(page.store, row["observation_id"]) if row["observation_id"] else None
    if failing is None:
        return
    st.subheader("What the failing call sent (personal data masked)")
    st.caption("As the partner received it when it failed; a retry's own body, edited or not, is in the History below.")
    body = failing["payload"] or recorded
    if body:
        st.code(masked_text(body if isinstance(body, bytes | str) else json.dumps(body)), language="json")
    else:
        st.caption("No request body was stored for this step; the attributes below describe it.")
    with st.expander("What the failing call reported (its attributes)"):
        st.json(mask(failing["attributes"]))


if __name__ == "__main__":
    render()
