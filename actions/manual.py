"""Resolve, ignore, reopen, assign and note: decisions of a person, recorded and audited; no partner is called."""

from __future__ import annotations

from typing import Any

from actions import ledger, roles
from actions.results import ActionResult
from actions.runner import RESOLVED, Request, closed_by, entry_for, refuse
from actions.services import Services
from syncwatch.store import actions as q

CLOSING = {"resolve": "resolved", "ignore": "ignored"}


def close(services: Services, request: Request, exception: dict[str, Any]) -> ActionResult:
    """Resolve or ignore with a note; the correlator keeps it so unless a new failure arrives."""
    entry = entry_for(services, request)
    status = CLOSING[request.kind]
    if exception["status"] == status or exception["status"] == RESOLVED:
        reason = f"the exception is already {closed_by(services, exception)}; nothing changed"
        return refuse(services, entry, exception["status"], reason, skipped=f"already {exception['status']}")
    if not (request.note or "").strip():
        return refuse(services, entry, exception["status"], f"a note is required to {request.kind}", "failed")
    now = services.clock()
    values = {"status": status, "resolved_at": now, "resolved_by_observation_id": None, "updated_at": now}
    return _record(services, request, exception, entry, values, "Note recorded")


def reopen(services: Services, request: Request, exception: dict[str, Any]) -> ActionResult:
    """Undo a person's resolve or ignore (a wrong click, a fix that did not hold), with a note. An
    exception a later observation resolved is not reopened by hand: the step succeeded, and a new
    failure of it opens the exception again by itself."""
    entry = entry_for(services, request)
    if exception["status"] not in CLOSING.values():
        return refuse(services, entry, exception["status"], f"the exception is {exception['status']}; nothing changed")
    if exception.get("resolved_by_observation_id"):
        reason = (
            f"the exception is {closed_by(services, exception)}, so there is nothing to reopen; "
            "a new failure of the step opens it again by itself"
        )
        return refuse(services, entry, exception["status"], reason)
    if not (request.note or "").strip():
        return refuse(services, entry, exception["status"], "a note is required to reopen", "failed")
    values = {"status": "open", "resolved_at": None, "updated_at": services.clock()}
    return _record(services, request, exception, entry, values, "Note recorded")


def assign(services: Services, request: Request, exception: dict[str, Any]) -> ActionResult:
    entry = entry_for(services, request)
    assignee = request.target
    if exception["status"] in CLOSING.values():  # nothing left to work (reopen it first)
        reason = f"the exception is already {closed_by(services, exception)}; nothing to assign"
        return refuse(services, entry, exception["status"], reason, skipped=f"already {exception['status']}")
    if assignee is None or not roles.may(services.config, assignee, "resolve"):
        return refuse(services, entry, exception["status"], roles.cannot_work(services.config, assignee), "failed")
    if not roles.in_scope(services.config, assignee, exception):
        scope = roles.scope_of(services.config, assignee)
        reason = f"the scope of {assignee} is {scope}, which leaves this exception out; assign someone whose it is"
        return refuse(services, entry, exception["status"], reason, "failed")
    if assignee == exception.get("assignee"):
        reason = f"it is already assigned to {assignee}; nothing changed"
        return refuse(services, entry, exception["status"], reason, skipped=f"already assigned to {assignee}")
    values = {"assignee": assignee, "updated_at": services.clock()}
    earlier = exception.get("assignee")
    taken = f", taking it over from {earlier}" if earlier else ""
    return _record(services, request, exception, entry, values, f"Assigned to {assignee}{taken}")


def note(services: Services, request: Request, exception: dict[str, Any]) -> ActionResult:
    """A note in the exception's history for whoever works it next (called the 3PL, waiting for
    their resend); nothing else changes."""
    entry = entry_for(services, request)
    if not (request.note or "").strip():
        return refuse(services, entry, exception["status"], "write the note to add", "failed")
    return _record(services, request, exception, entry, {"updated_at": services.clock()}, "Note added")


def _record(
    services: Services,
    request: Request,
    exception: dict[str, Any],
    entry: ledger.Entry,
    values: dict[str, Any],
    message: str,
) -> ActionResult:
    now = services.clock()
    asked = {"note": request.note, "target": request.target}
    with services.store.writing() as conn:
        action_id = ledger.record_done(
            conn, exception["id"], request.kind, request.actor, asked, values_json(values), now
        )
        q.set_exception(conn, exception["id"], values)
        entry.result = "succeeded"
        status = values.get("status", exception["status"])
        entry.detail = {
            "action_id": action_id,
            "sla_before": exception["sla_state"],
            "sla_after": exception["sla_state"],
            "status_before": exception["status"],
            "status_after": status,
        }
        ledger.audit(conn, entry, now)
    return ActionResult(True, status, f"{message}; the exception is {status}.", action_id)


def values_json(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in values.items()}
