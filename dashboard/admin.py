"""Admin, for leads: what was rejected and why (with the raw bytes), which alerts went out, who
did what, and the active config."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from actions import api
from actions.roles import POLICY_ACTOR
from dashboard.config_view import partners_table, settings_table
from dashboard.masking import masked_bytes, masked_text
from dashboard.widgets import Page, none_yet, prepare
from syncwatch.model import count
from syncwatch.redact import mask_emails
from syncwatch.store import queries as q
from syncwatch.store.alerts import MAX_ATTEMPTS, next_delivery


def render() -> None:
    page = prepare("Admin")
    if page is None:
        return
    if page.viewer.role != "lead":
        st.warning("Admin is for operations leads.")
        return
    quarantine, alerts, audit, config = st.tabs(["Quarantine", "Alerts", "Audit log", "Active config"])
    with quarantine:
        _quarantine(page)
    with alerts:
        _alerts(page)
    with audit:
        _audit(page)
    with config:
        _config(page)


def _quarantine(page: Page) -> None:
    items, deliveries = q.quarantine_totals(page.store)
    if not items:
        st.success("Nothing was rejected: every input so far was understood.")
        return
    again = f", rejected {deliveries:,} times in all (the same input delivered again is kept once)"
    reasons = "its reason" if items == 1 else "their reasons"
    st.caption(f"{count(items, 'rejected input')} kept with {reasons}{again if deliveries > items else ''}.")
    st.subheader("Most frequent reasons")
    reasons = q.quarantine_by_reason(page.store)
    st.dataframe(reasons, hide_index=True, column_config=_REASON_COLUMNS)
    st.subheader("Latest rejected inputs")
    recent = q.quarantine_recent(page.store)
    recent["reason"] = recent["reason"].map(mask_emails)
    st.dataframe(recent, hide_index=True, column_config=_ITEM_COLUMNS)
    chosen = st.selectbox("Show the raw bytes of", list(recent["id"]), format_func=lambda i: f"#{i}")
    raw = q.quarantine_raw(page.store, int(chosen)) or b""
    st.caption(f"{len(raw)} bytes kept; personal data masked in both views.")
    st.code(masked_text(raw) or "(empty)", language="text")
    with st.expander("Hex"):
        st.code(hex_dump(masked_bytes(raw)[:HEX_SHOWN]) or "(empty)", language="text")


HEX_SHOWN = 4096


def hex_dump(data: bytes) -> str:
    """Sixteen bytes a line: the offset, each byte in hex, and the printable ones as text."""
    lines = []
    for at in range(0, len(data), 16):
        row = data[at : at + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        lines.append(f"{at:08x}  {row.hex(' '):<47}  {text}")
    return "\n".join(lines)


_REASON_COLUMNS = {"items": "inputs", "deliveries": "times rejected"}
_ITEM_COLUMNS = {
    "id": "#",
    "received_at": st.column_config.DatetimeColumn("first rejected", format="YYYY-MM-DD HH:mm:ss"),
    "last_received_at": st.column_config.DatetimeColumn("last rejected", format="YYYY-MM-DD HH:mm:ss"),
    "deliveries": "times",
    "position": "where in the source",
    "content_type": "content type",
    "raw_size": st.column_config.NumberColumn("size (bytes)", format="%d"),
}


DELIVERED_AGAIN = "admin_delivered_again"  # the outcome of "Deliver … again", shown after the rerun


def _alerts(page: Page) -> None:
    """What was raised and whether the webhook took it: an unset or failing webhook shows here."""
    recent = q.alerts_recent(page.store)
    if recent.empty:
        none_yet("No alert has been raised yet.")
        return
    waiting = q.alerts_undelivered(page.store)
    where = f"`serve` posts alerts to the URL in its environment variable `{page.config.alert_webhook_env}`"
    if waiting:
        st.warning(
            f"{count(waiting, 'alert')} not delivered: {where}; without it, or while it fails, they wait here "
            f"(tried up to {MAX_ATTEMPTS} times over 8 hours)."
        )
    else:
        st.caption(f"Every alert was delivered. {where}.")
    done = st.session_state.pop(DELIVERED_AGAIN, None)
    if done is not None:
        (st.success if done.ok else st.error)(done.message)
    given_up = q.alerts_given_up(page.store)
    if given_up and st.button(f"Deliver the {count(given_up, 'alert')} given up on again", key="deliver_again"):
        st.session_state[DELIVERED_AGAIN] = api.deliver_alerts_again(page.store, page.config, page.viewer.actor)
        st.rerun()  # drawn afresh: the alerts waiting again, the button gone
    recent.insert(0, "delivery", [_delivery(row) for row in recent.itertuples()])
    shown = recent.drop(columns=["sent_at", "attempts", "last_attempt_at", "last_error"])
    st.dataframe(shown, hide_index=True, column_config=_ALERT_COLUMNS)


def _delivery(row: Any) -> str:
    if pd.notna(row.sent_at):
        return "sent"
    if row.attempts >= MAX_ATTEMPTS:
        return f"gave up after {row.attempts} attempts: {row.last_error}"
    if not row.attempts:
        return "waiting"
    again = next_delivery(None if pd.isna(row.last_attempt_at) else row.last_attempt_at, row.attempts)
    return f"waiting ({row.attempts} attempts: {row.last_error}; next at {again:%a %H:%M} UTC)"


def _why(detail: dict[str, Any]) -> str:
    """A refusal's reason, or a sent action's failure, which its outcome holds."""
    return str(detail.get("reason") or (detail.get("outcome") or {}).get("reason") or "")


_ALERT_COLUMNS = {
    "id": "#",
    "created_at": st.column_config.DatetimeColumn("raised", format="YYYY-MM-DD HH:mm"),
    "link": st.column_config.LinkColumn("open", display_text="open"),
}


AUDIT_WHO = {"everyone": {}, "people": {"not_actor": POLICY_ACTOR}, "the retry policy": {"actor": POLICY_ACTOR}}
"""Whose entries the audit tab shows: a partner down for hours fills the newest 200 with the retry
policy's automatic retries and probes, and a lead looking for what people did then found none."""


def _audit(page: Page) -> None:
    who = st.segmented_control("Who", list(AUDIT_WHO), default="everyone", required=True, key="audit_who")
    log = q.audit_recent(page.store, **AUDIT_WHO[who])
    if log.empty:
        none_yet("No action has been taken yet." if who == "everyone" else f"No entries of {who} yet.")
        return
    st.caption("Every action and sign-in, newest first; the log is append-only, so nobody can change it.")
    details = log.pop("detail")
    log["why"] = [
        mask_emails(_why(d)) if isinstance(d, dict) and result in ("refused", "failed") else ""
        for d, result in zip(details, log["result"], strict=True)
    ]
    log["client"] = [str(d.get("client") or "") if isinstance(d, dict) else "" for d in details]
    st.dataframe(log, hide_index=True, column_config=_AUDIT_COLUMNS)


_AUDIT_COLUMNS = {
    "id": "#",
    "at": st.column_config.DatetimeColumn("when (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    "actor": "who",
    "role": "role",
    "action": "action",
    "target": "exception or job",
    "request_summary": "asked for (personal data masked)",
    "result": "result",
    "why": "why (refused or failed)",
    "client": "from (sign-ins)",
}


def _scope(scope: Any) -> str:
    """'every channel and partner', or the ones a user is limited to."""
    parts = [f"{kind}: {', '.join(names)}" for kind, names in scope.model_dump().items() if names]
    return "; ".join(parts) or "every channel and partner"


def _config(page: Page) -> None:
    st.caption(f"From {page.config.path or 'the packaged defaults'}. Secrets come from the environment; never shown.")
    st.subheader("Settings")
    st.dataframe(settings_table(page.config), hide_index=True)
    st.subheader("Partners")
    st.dataframe(partners_table(page.config), hide_index=True)
    st.subheader("Users and roles")
    st.dataframe(
        [{"user": n, "role": u.role, "scope": _scope(u.scope)} for n, u in page.config.file.users.items()],
        hide_index=True,
    )
    st.subheader("Runbooks")
    st.dataframe([{"category": k, "runbook": v} for k, v in page.config.file.runbooks.items()], hide_index=True)


if __name__ == "__main__":
    render()
