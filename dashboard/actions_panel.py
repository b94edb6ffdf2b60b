"""The buttons under an exception, the history of what was done, and the bulk job over a filter;
every click goes through the action layer.

The page shows only what the viewer's role may use (``allowed_actions``); the action layer checks
again, so a hidden button is a convenience, never the guard.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from typing import Any

import pandas as pd
import streamlit as st

from actions import api, roles
from actions.masking import mask as mask_typed
from dashboard.fmt import when
from dashboard.masking import apply_edits, literal, mask
from dashboard.widgets import Page
from syncwatch.redact import clip, mask_emails
from syncwatch.store import queries as q

OUTCOME = "action_outcome"
PLAN, JOB = "bulk_plan", "bulk_job"
JOB_SHOWN_DONE = "bulk_job_shown_done"  # the finished job the whole page was refreshed for
REASONS_SHOWN = 5
NOTE_REQUIRED = ("resolve", "ignore")  # a bulk job of these records why on every exception
NOTE_SENT = "note_sent"  # the exception whose note box empties on the next run
DRAFTS = "note_drafts"  # exception id → the note typed there, kept while other exceptions are open
BUTTONS = (
    ("retry", "Retry"),
    ("reroute", "Reroute"),
    ("replay", "Replay"),
    ("resolve", "Resolve"),
    ("ignore", "Ignore"),
    ("assign", "Assign to me"),
    ("note", "Add note"),
)
ACTIVE = ("open", "retrying")
# Buttons whose click on a page drawn before a colleague closed the exception still reaches the
# action layer, which refuses it and says who closed it (a typed note keeps its own warning below).
STALE_CLICKS = ("retry", "replay", "reroute", "resolve", "ignore", "assign")


def panel(page: Page, row: dict[str, Any], recorded: dict[str, Any] | None) -> None:
    """Outcome of the last click, then the actions this viewer may take on this exception
    (``recorded``: the body a retry would send, read once for the whole page)."""
    _outcome(row["id"], row["status"])
    allowed = api.allowed_actions(page.config, page.viewer.actor, row)
    if {"retry", "reroute"} & allowed and (moved := api.rerouted_text(page.store, page.config, row)):
        allowed -= {"retry", "reroute"}  # either would fulfil the order twice
        told = literal(f"{moved[0].upper()}{moved[1:]}")  # the partner's reference is the partner's text
        st.caption(f"{told}: no retry or second reroute, which would fulfil the order twice.")
    if not allowed and row["status"] not in ACTIVE:  # who closed it is for every reader, not only who may act
        st.caption(f"This exception is {api.closed_text(page.store, page.config, row)}.")
    if not allowed and page.viewer.role != "executive":
        scope = roles.scope_of(page.config, page.viewer.actor)
        st.caption(f"This exception is outside your scope ({scope}): you can read it; a lead acts on it.")
        return
    if not allowed:
        st.caption(f"{page.viewer.label} can read this exception; agents and leads act on it.")
        return
    key = f"note_text_{row['id']}"
    if row["status"] not in ACTIVE:
        stale = next((a for a in STALE_CLICKS if a in allowed and st.session_state.get(f"{a}_{row['id']}")), None)
        if stale is not None:  # clicked on a page drawn before a colleague closed it: told why, and audited
            chosen = st.session_state.get(f"assignee_{row['id']}", page.viewer.actor) if stale == "assign" else None
            typed = (st.session_state.get(key) or "").strip() or None
            _perform(page, row, stale, note=typed, payload=None, target=chosen)
        closed = api.closed_text(page.store, page.config, row)
        reopenable = "reopen" in allowed and not row.get("resolved_by_observation_id")
        st.caption(
            f"This exception is {closed}; {'reopen it if that was wrong' if reopenable else 'nothing left to do'}."
        )
        typed = (st.session_state.get(key) or "").strip()
        last = st.session_state.get(OUTCOME, {})
        if typed and not (last.get("exception") == row["id"] and last.get("ok")):  # not this viewer's own closing
            st.warning(
                f"Your note was not recorded: the exception was {closed} while this page was open. "
                f"It read: {mask_typed(typed)}"
            )
        if reopenable:
            _reopen(page, row)
        return
    drafts = st.session_state.setdefault(DRAFTS, {})
    if st.session_state.pop(NOTE_SENT, None) == row["id"]:
        drafts.pop(row["id"], None)
        st.session_state[key] = ""  # set before the box is drawn: the browser shows it emptied
    elif key not in st.session_state and row["id"] in drafts:
        st.session_state[key] = drafts[row["id"]]  # typed before another exception was opened
    note = st.text_input(
        "Note (kept in the history below; needed to resolve, ignore or add a note)",
        key=key,
        on_change=_keep_draft,
        args=(key, row["id"]),
    )
    payload, sendable = _edited_payload(row, recorded) if "retry" in allowed else (None, True)
    target = _reroute_target(page, row) if "reroute" in allowed else None
    # A lead hands an exception to someone; an agent takes it ("Assign to me").
    assignee = page.viewer.actor
    if page.viewer.role == "lead" and "assign" in allowed:
        assignee = st.selectbox("Assign to", _assignees(page), key=f"assignee_{row['id']}")
    offered = [(action, label) for action, label in BUTTONS if action in allowed]
    cols = st.columns(len(BUTTONS))
    for col, (action, label) in zip(cols, offered, strict=False):
        kind = "primary" if action == row["suggested_action"] else "secondary"  # the runbook's choice stands out
        if action == "assign" and assignee != page.viewer.actor:
            label = f"Assign to {assignee}"
        done = action == "assign" and row["assignee"] == assignee  # assigning it again would change nothing
        blocked = done or (action == "retry" and not sendable)
        if col.button(label, key=f"{action}_{row['id']}", type=kind, disabled=blocked):
            chosen = assignee if action == "assign" else target
            _perform(page, row, action, note=note or None, payload=payload, target=chosen)
    suggested = row["suggested_action"]
    if suggested and suggested not in allowed and suggested in roles.RIGHTS[roles.LEAD]:
        st.caption(f"The runbook suggests {suggested}, which a lead does: ask one.")


HISTORY_COLUMNS = {
    "requested_at": "When",
    "exception_id": "Exception",
    "kind": "Action",
    "actor": "By",
    "status": "Result",
    "note": "Note",
    "done": "What happened",
}


def history(actions: pd.DataFrame) -> pd.DataFrame:
    """Actions as the next agent reads them: when, what, by whom, how it went, the note left, and
    what was sent. A note is masked as the audit log masks it (emails and phone numbers: people type
    them); partner steps and errors have their emails masked, as partner text is everywhere."""
    shown = actions.assign(
        requested_at=actions["requested_at"].map(when),
        note=actions["request"].map(lambda asked: mask_typed((asked or {}).get("note") or "")),
        done=[
            mask_emails(_done(kind, asked or {}, outcome or {}))
            for kind, asked, outcome in zip(actions["kind"], actions["request"], actions["outcome"], strict=True)
        ],
    )
    columns = [k for k in HISTORY_COLUMNS if k in shown.columns]
    return shown[columns].rename(columns=HISTORY_COLUMNS)


EDITED_SHOWN = 300  # characters of an edited body the history quotes


def _done(kind: str, asked: dict[str, Any], outcome: dict[str, Any]) -> str:
    steps = outcome.get("steps") or []
    if steps:
        done = "; ".join(str(step) for step in steps)
    elif kind in ("assign", "reroute") and asked.get("target"):
        done = f"to {asked['target']}"
    else:
        done = str(outcome.get("reason") or "")
    if asked.get("edited") and isinstance(asked.get("body"), dict):  # what the agent changed went out, or failed
        body = json.dumps(mask(asked["body"]), separators=(",", ":"), ensure_ascii=False)
        done += f"{'; ' if done else ''}with the edited body {clip(body, EDITED_SHOWN)}"
    return done


def _perform(page: Page, row: dict[str, Any], action: str, **options: Any) -> None:
    if action not in ("assign", "reroute"):
        options.pop("target")
    if action != "retry":
        options.pop("payload")
    with st.spinner(f"{action.capitalize()} in progress…"):
        result = api.perform(
            page.store, page.config, action=action, exception_id=row["id"], actor=page.viewer.actor, **options
        )
    st.session_state[OUTCOME] = {"exception": row["id"], "action": action, **asdict(result)}
    if result.ok and options.get("note"):  # it went with the action: not added twice, nor carried to the next one
        st.session_state[NOTE_SENT] = row["id"]
    st.rerun()


def _keep_draft(key: str, exception_id: str) -> None:
    """Keep what was typed in a note box beside the widget: Streamlit forgets a widget's state once a
    run draws it no more, so a note half-typed on one exception was gone after opening another."""
    st.session_state.setdefault(DRAFTS, {})[exception_id] = st.session_state.get(key, "")


def forget_drafts() -> None:
    """Drop typed notes and the last outcome: the demo switched to another person."""
    for key in [k for k in st.session_state if str(k).startswith("note_text_")]:
        del st.session_state[key]
    st.session_state.pop(DRAFTS, None)
    st.session_state.pop(OUTCOME, None)


def _outcome(exception_id: str, status: str) -> None:
    """The result of the last action on this exception, where the buttons are."""
    outcome = st.session_state.get(OUTCOME)
    if not outcome or outcome["exception"] != exception_id or outcome["status"] != status:
        return  # another exception's, or older than a change since (a colleague closed it)
    action, message = outcome["action"].capitalize(), outcome["message"]
    # "Retry failed: …" names the action itself: "**Retry** failed: …", not "**Retry:** Retry failed: …".
    # The message quotes the partner (its answer, its references): shown as text, never as Markdown.
    text = (
        f"**{action}** {literal(message[len(action) + 1 :])}"
        if message.startswith(f"{action} ")
        else f"**{action}:** {literal(message)}"
    )
    if outcome.get("skipped") and outcome["ok"]:  # the same action done already (a second click): nothing now
        st.info(f"{text} Nothing changed: the exception is {outcome['status']}.")
        return
    if "the exception" not in message.lower():  # unless the message already says where it stands
        text += f" The exception is {'now ' if outcome['ok'] else ''}{outcome['status']}."
    (st.success if outcome["ok"] else st.error)(text)


def _edited_payload(row: dict[str, Any], original: dict[str, Any] | None) -> tuple[dict[str, Any] | None, bool]:
    """The payload to retry with (``original``: the recorded body, as Retry finds it), when the agent
    edits it, and whether Retry may send: an edit that is not valid JSON blocks it, since sending
    the original instead is not what the agent asked for. Personal data stays masked on screen.
    Where no body was recorded, the agent may write one: without it a retry has nothing to send."""
    if original is None:
        return _written_payload(row)
    if not st.toggle("Edit the payload before retrying", key=f"edit_{row['id']}"):
        return None, True
    shown = mask(original)
    text = st.text_area("Payload to send", json.dumps(shown, indent=2), height=220, key=f"payload_{row['id']}")
    edited = _json(text)
    if not isinstance(edited, dict):
        st.error(
            f"The edited payload is not a JSON object ({_json_problem(text)}): fix it, or switch editing off, to retry."
        )
        return None, False
    return (apply_edits(original, shown, edited) if edited != shown else None), True


def _written_payload(row: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    if not st.toggle("Write the request body to send (none was recorded)", key=f"write_{row['id']}"):
        return None, True
    text = st.text_area("Request body to send (JSON)", "{}", height=160, key=f"body_{row['id']}")
    written = _json(text)
    if written == {}:
        st.caption("Write the fields the partner expects between the braces; Retry sends this body.")
        return None, True
    if not isinstance(written, dict):
        st.error('This is not a JSON object: Retry would have nothing to send. Write the body as {"field": …}.')
        return None, False
    return written, True


def _json_problem(text: str) -> str:
    """Where the text stops being JSON, as an editor would point at it."""
    try:
        value = json.loads(text)
    except ValueError as err:
        if isinstance(err, json.JSONDecodeError):
            return f"line {err.lineno}, column {err.colno}: {err.msg}"
        return str(err)
    return f"it is {type(value).__name__ if value is not None else 'null'}, not {{…}}"


def _json(raw: bytes | str | None) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _reopen(page: Page, row: dict[str, Any]) -> None:
    """A person's resolve or ignore undone (a wrong click, a fix that did not hold), with why."""
    why = st.text_input("Why reopen it (needed; kept in the history below)", key=f"reopen_note_{row['id']}")
    if st.button("Reopen", key=f"reopen_{row['id']}"):
        _perform(page, row, "reopen", note=why.strip() or None, payload=None, target=None)


def _reroute_target(page: Page, row: dict[str, Any]) -> str | None:
    """The alternates of the partner the reroute moves from: the failing one where it is a warehouse
    or 3PL. The order's partner is empty while the release to it fails, and offering every partner
    put the failing one first, which the action then refused."""
    original, alternates = api.reroute_choices(page.store, page.config, row, page.viewer.actor)
    if original is None:
        return None
    if not alternates:
        every = api.reroute_choices(page.store, page.config, row)[1]
        if every:
            st.caption(
                f"The alternates of {original} ({', '.join(every)}) are outside your partners: a lead whose "
                "partners include them reroutes there."
            )
        else:
            st.caption(f"{original} has no alternates to reroute to: a lead names them in the config's partners.")
        return None
    return st.selectbox(f"Reroute from {original} to", alternates, key=f"target_{row['id']}")


def bulk(page: Page, filters: q.QueueFilter, total: int, age: str) -> None:
    """Leads act on everything the filter matches: plan first (how many, which partners), then run.
    A plan is for the filter it was made with (``age``: the Opened choice, whose times move): once
    the filter changes, it is dropped, so a run never acts on what the queue no longer shows."""
    if page.viewer.role != "lead":
        if total and page.viewer.role == "agent":  # the single panel says so too: what is a lead's, and whom to ask
            st.caption(f"Bulk actions on all {total} matching exceptions are a lead's: ask one to run them.")
        return
    if st.session_state.get(JOB):  # whatever the queue holds now: a job that resolved it all empties it
        st.fragment(run_every=2)(_job_status)(page)
    if total == 0:
        return
    # Keyed: its title counts the queue, which grows while a lead works through an outage, and a new
    # title made a new expander, closed under the lead's hands between choosing the action and the target.
    with st.expander(f"Bulk action on all {total} matching exceptions", key="bulk_panel"):
        action = st.selectbox("Action", api.BULK_ACTIONS, key="bulk_action")
        target = None
        if action == "assign":
            target = st.selectbox("Assign to", _assignees(page), key="bulk_assignee")
        elif action == "reroute":  # each order moves from the partner its failed step went to
            # Not the partners the queue is filtered to: those are the ones failing, which the plan
            # would leave every order with. No default either: where orders go is the lead's choice.
            away = set(filters.systems) | set(filters.partners)
            targets = [p for p in api.reroute_targets(page.config, page.viewer.actor) if p not in away]
            target = st.selectbox("Reroute to", targets, index=None, placeholder="Choose a partner", key="bulk_target")
        chosen = _chosen(filters, age, action, target)
        unnamed = action in ("assign", "reroute") and target is None
        if st.button("Plan", key="bulk_plan_button", disabled=unnamed):
            planned = api.plan_bulk(
                page.store,
                page.config,
                action=action,
                filters=filters.as_mapping(),
                actor=page.viewer.actor,
                target=target,
            )
            st.session_state[PLAN] = (chosen, planned)
        needed = action in NOTE_REQUIRED
        note = st.text_input(
            "Note (why; recorded in each exception's history)" + (", required to " + action if needed else ""),
            key="bulk_note",
        )
        planned_for, plan = st.session_state.get(PLAN, (None, None))
        if plan is not None and planned_for == chosen:
            _show_plan(page, plan, note.strip() or None)
        elif plan is not None:
            st.session_state.pop(PLAN)
            st.info("The filters or the action changed since the plan: press Plan for what matches now.")


def _chosen(filters: q.QueueFilter, age: str, action: str, target: str | None) -> str:
    """What a plan was made for, as text: the filters but for the Opened times, which move with the
    clock at every rerun, and the age chosen instead."""
    mapping = {k: v for k, v in filters.as_mapping().items() if k not in ("opened_after", "opened_before")}
    return json.dumps([mapping, age, action, target], sort_keys=True, default=str)


def _assignees(page: Page) -> list[str]:
    """The people who can work exceptions (agents and leads), the viewer first."""
    people = [name for name, user in page.config.file.users.items() if user.role in ("agent", "lead")]
    return sorted(people, key=lambda name: (name != page.viewer.actor, name))


def _show_plan(page: Page, plan: api.BulkPlan, note: str | None) -> None:
    to = f" to {plan.target}" if plan.target else ""
    said = " ".join(t for t in (plan.makeup, plan.left_out_text, plan.caveat) if t)
    st.warning(f"**{plan.action.capitalize()} {plan.count} exceptions{to}.** {said}")
    if plan.partners:
        st.dataframe(
            [{"partner": p, "exceptions": n} for p, n in sorted(plan.partners.items(), key=lambda i: -i[1])],
            hide_index=True,
        )
    missing = plan.action in NOTE_REQUIRED and not note
    if missing:
        st.caption(f"Write the note first: {plan.action} records why, on every exception.")
    run = f"Run {plan.action} on {plan.count} exceptions"
    if plan.count and st.button(run, type="primary", key="bulk_run", disabled=missing):
        st.session_state[JOB] = api.start_bulk(page.store, page.config, replace(plan, note=note), page.viewer.actor)
        st.session_state.pop(PLAN, None)
        st.rerun()


def _failure_lines(reasons: list[tuple[str, int]], failed: int) -> list[str]:
    """The most frequent reasons, then how many more there were, so the counts add up to ``failed``."""
    lines = [f"- {n} × {literal(mask_emails(reason))}" for reason, n in reasons[:REASONS_SHOWN]]
    rest = reasons[REASONS_SHOWN:]
    if rest:
        others = sum(n for _, n in rest)
        lines.append(f"- {others} more, for {len(rest)} other reasons: each exception's history says which")
    unexplained = failed - sum(n for _, n in reasons)
    if unexplained > 0:
        lines.append(f"- {unexplained} refused before anything was sent: the audit log (Admin) says why")
    return lines


def _skipped_text(status: dict[str, Any]) -> str:
    """', 3 already done (2 already resolved, 1 already retried)': found done, so not counted as the job's."""
    skipped = status.get("skipped", 0)
    if not skipped:
        return ""
    why = ", ".join(f"{n} {reason}" for reason, n in (status.get("skipped_reasons") or {}).items())
    return f", {skipped} already done" + (f" ({literal(why)})" if why else "")


def _job_status(page: Page) -> None:
    job = st.session_state[JOB]
    status = api.bulk_status(page.store, job)
    done, total = status.get("done", 0), status.get("total", 0)
    succeeded, failed = status.get("succeeded", 0), status.get("failed", 0)
    st.write(f"Bulk job `{job}`: **{status.get('status', 'unknown')}**")
    st.progress(min(1.0, done / total) if total else 1.0, text=f"{done} of {total} done")
    if done:
        say = st.error if failed and not succeeded else st.warning if failed else st.success
        if not succeeded and not failed:
            say = st.info  # the job fixed nothing: others had, before it got there
        say(f"{succeeded} succeeded, {failed} failed or refused{_skipped_text(status)}.")
    if failed:
        st.markdown("\n".join(_failure_lines(api.bulk_failure_reasons(page.store, job), failed)))
    running = status.get("status") in ("pending", "running")
    if not running and st.session_state.get(JOB_SHOWN_DONE) != job:
        st.session_state[JOB_SHOWN_DONE] = job
        st.rerun(scope="app")  # the queue above was read while the job ran: read it again, once
    if running and st.button("Cancel the job", key="bulk_cancel"):
        result = api.cancel_bulk(page.store, job, page.viewer.actor, page.config)
        st.info(result.message)
