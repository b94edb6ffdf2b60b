"""Partners whose automatic retries are paused because they stopped answering them (the circuit of
``actions.breaker``), said where people work exceptions: on Operations for a lead, over the queue and
in an exception's detail for an agent. Once a partner answers again, the notes are gone; the audit log
on the Admin page keeps the history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from actions import roles
from dashboard.fmt import age, duration, when
from dashboard.masking import literal
from dashboard.widgets import Page
from syncwatch.model import as_utc
from syncwatch.redact import clip, mask_emails
from syncwatch.store import queries as q
from syncwatch.store.actions import HeldCircuit

ICON = ":material/pause_circle:"
REASON_SHOWN = 300  # characters of the partner's error quoted
PEOPLE = "People's own retries, reroutes and bulk jobs are not paused."


def held(page: Page) -> dict[str, HeldCircuit]:
    """The partners whose automatic retries are paused now. Read by the wall clock, as the retry
    policy writes them, not by the correlator's clock the SLA figures use."""
    return q.held_circuits(page.store, datetime.now(UTC))


def operations(page: Page, circuits: dict[str, HeldCircuit]) -> None:
    """One box for every partner paused, each with since when, why, the next test, and its exceptions."""
    if not circuits:
        return
    now = datetime.now(UTC)
    cooldown = page.config.file.actions.policy.breaker_cooldown
    many = len(circuits) > 1
    head = (
        f"Automatic retries are paused for {len(circuits)} partners that stopped answering them:"
        if many
        else f"Automatic retries to {literal(next(iter(circuits)))} are paused: it stopped answering them."
    )
    lines = [f"- {_line(c, cooldown, now)}" for c in sorted(circuits.values(), key=lambda c: c.partner)]
    after = "When a test retry is answered, the paused retries go on by themselves, each when its own wait is over."
    st.warning("\n".join([f"**{head}**", "", *lines, "", f"{after} {PEOPLE}"]), icon=ICON)
    for partner in sorted(circuits):
        st.page_link(
            "exceptions.py",
            label=f"Open the exceptions waiting for {partner}",
            icon=":material/arrow_forward:",
            query_params={"system": partner},
        )


def _line(circuit: HeldCircuit, cooldown: timedelta, now: datetime) -> str:
    since = _since(circuit, now)
    why = f" Why: {_reason(circuit)}." if circuit.reason else ""
    tests = (
        f" {circuit.probes} test retr{'ies' if circuit.probes != 1 else 'y'} so far, none answered."
        if circuit.probes
        else ""
    )
    return (
        f"**{literal(circuit.partner)}**: paused {since}.{why} One automatic retry goes as a test every "
        f"{duration(cooldown)}: {_next_test(circuit, cooldown, now)}.{tests}"
    )


def exception_note(page: Page, row: dict[str, Any], history: pd.DataFrame, circuits: dict[str, HeldCircuit]) -> None:
    """Over an open exception the retry policy would still retry, whose partner's automatic retries
    are paused: why no automatic retry of it goes, and that the agent's own Retry does."""
    policy = page.config.file.actions.policy
    if not circuits or row["status"] != "open" or row["category"] not in policy.categories:
        return
    circuit = circuits.get(retried_at(row, history) or "")
    now = datetime.now(UTC)
    if circuit is None or _retries_over(row, history, policy.max_attempts, policy.max_age, now):
        return
    partner, cooldown = literal(circuit.partner), policy.breaker_cooldown
    why = f": {_reason(circuit)}" if circuit.reason else ""
    st.warning(
        f"**Automatic retries to {partner} are paused while it is down** ({_since(circuit, now)}{why}). So "
        "this exception gets no automatic retry for now, and none is added to its History. One automatic retry to "
        f"{partner} goes as a test every {duration(cooldown)}; {_next_test(circuit, cooldown, now)}."
        " Once one is answered, this exception's automatic retries go on by themselves. Your own Retry is not "
        "paused: it goes at once.",
        icon=ICON,
    )


def _retries_over(
    row: dict[str, Any], history: pd.DataFrame, max_attempts: int, max_age: timedelta, now: datetime
) -> bool:
    """Whether the policy is done with this exception anyway (its attempts used, or its failure too
    old): a person decides, paused or not, and the note would promise retries that never come."""
    automatic = history[history["actor"] == roles.POLICY_ACTOR] if not history.empty else history
    attempts = int(automatic["attempts"].sum()) if not automatic.empty else 0
    last_seen = row.get("last_seen_at")
    too_old = last_seen is not None and now - as_utc(last_seen) > max_age
    return attempts >= max_attempts or too_old


def paused_caption(circuits: dict[str, HeldCircuit]) -> None:
    """Above the queue and the endpoints: whose exceptions wait, and why their automatic retries stopped."""
    if not circuits:
        return
    names = ", ".join(literal(p) for p in sorted(circuits))
    they = "they are" if len(circuits) > 1 else "it is"
    st.caption(
        f"Automatic retries to {names} are paused while {they} down: their exceptions get no automatic retry "
        "until a test retry is answered. Your own Retry still goes at once."
    )


def retried_at(row: dict[str, Any], history: pd.DataFrame) -> str | None:
    """The partner the automatic retries of this exception go to: the one its last automatic retry
    went to, else the system whose call failed."""
    if not history.empty:
        automatic = history[history["actor"] == roles.POLICY_ACTOR]
        for request in automatic["request"]:
            if isinstance(request, dict) and request.get("partner"):
                return str(request["partner"])
    return str(row["system"]) if row.get("system") else None


def _since(circuit: HeldCircuit, now: datetime) -> str:
    if circuit.opened_at is None:
        return "for more than a day"
    ago = f" ({age(circuit.opened_at, now)} ago)" if circuit.opened_at <= now else ""
    return f"since {when(circuit.opened_at)}{ago}"


def _next_test(circuit: HeldCircuit, cooldown: timedelta, now: datetime) -> str:
    due = circuit.probed_at + cooldown
    if due > now:
        return f"the next goes after {due:%H:%M} UTC, in {duration(due - now)}"
    return f"the next is due since {due:%H:%M} UTC and goes with the next automatic retry to it"


def _reason(circuit: HeldCircuit) -> str:
    """The opening's reason, quoting the partner's error: emails masked and every Markdown character
    escaped, as partner text is everywhere on the dashboard."""
    return literal(clip(mask_emails(circuit.reason), REASON_SHOWN))
