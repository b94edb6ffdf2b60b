"""How one action runs: check the actor, claim the action, call the partner under a span, record
the outcome, let the correlator move the transaction on, and audit every step of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from actions import ledger, roles
from actions.client import partner_time
from actions.errors import ActionError, InProgress, InvalidEdit, NotActionable, PartnerError
from actions.ledger import Claim, Entry
from actions.masking import summary
from actions.results import ActionResult
from actions.services import Services
from actions.telemetry import continuing
from correlator.passes import Correlator
from syncwatch.model import ExceptionStatus, as_utc
from syncwatch.store import actions as q

RESOLVED = ExceptionStatus.RESOLVED.value
DONE = {"retry": "retried", "reroute": "rerouted", "replay": "replayed"}
"""How a bulk job says an item was done before it got there ("already retried")."""


@dataclass(frozen=True)
class Request:
    kind: str
    exception_id: str
    actor: str
    note: str | None = None
    payload: dict[str, Any] | None = None
    target: str | None = None
    job_id: str | None = None
    settle: bool = True
    """Run a correlator pass afterwards, so the exception's state moves at once (bulk jobs pass once at the end)."""


@dataclass(frozen=True)
class Plan:
    """What a partner action will do, worked out before anything is claimed or sent."""

    summary: dict[str, Any]
    execute: Callable[[Services, Claim, dict[str, Any]], str]
    """Sends the requests; records what it did in the outcome dict; returns one sentence."""
    trace: tuple[str | None, str | None] = (None, None)


Prepare = Callable[[Services, Request, dict[str, Any]], Plan]


def refusal(services: Services, request: Request, exception: dict[str, Any] | None) -> str | None:
    config, actor = services.config, request.actor
    if request.kind not in roles.EXCEPTION_ACTIONS:
        return f"{request.kind!r} is not an action; choose from {', '.join(roles.EXCEPTION_ACTIONS)}"
    if exception is None:
        return f"there is no exception {request.exception_id}"
    if not roles.is_known(config, actor):
        return f"there is no user {actor} in the config, so they may only read"
    if not roles.may(config, actor, request.kind):
        return f"as {roles.described(config, actor)}, {actor} may not {request.kind}"
    if not roles.in_scope(config, actor, exception):
        return f"outside the scope of {actor}: exceptions of {exception.get('channel')} / {exception['system']}"
    # A retry after a reroute would fulfil the order twice: it sends the failed request to the first partner again.
    moved = rerouted(services, exception) if request.kind == "retry" else None
    return None if moved is None else f"{moved[0]}: a retry would send the order to {moved[1]} as well"


def rerouted(services: Services, exception: dict[str, Any]) -> tuple[str, str] | None:
    """('alex rerouted it to wms (WMS-7) at …', the partner it left) where a reroute of this
    exception succeeded; None where none did."""
    with services.store.engine.connect() as conn:
        moved = [a for a in q.actions_of(conn, exception["id"], "reroute") if a["status"] == "succeeded"]
    if not moved:
        return None
    last, asked = moved[0], moved[0]["request"] or {}
    ref = (last["outcome"] or {}).get("partner_ref")
    where = f"{asked.get('alternate', 'its alternate')}" + (f" ({ref})" if ref else "")
    return f"{last['actor']} rerouted it to {where} at {_when(last['requested_at'])}", asked.get("partner", "")


def closed_by(services: Services, exception: dict[str, Any]) -> str:
    """'resolved by sam at 19:11 UTC', "resolved: sam's retry at 19:11 UTC succeeded" (or by the
    observation that showed the step succeed): what an agent acting on a stale page is told
    instead of a silent no-op."""
    status = exception["status"]
    if exception.get("resolved_by_observation_id"):
        with services.store.engine.connect() as conn:
            sent = [
                a
                for kind in q.SENDING_ACTIONS
                for a in q.actions_of(conn, exception["id"], kind)
                if a["status"] == "succeeded"
            ]
        if not sent:
            return f"{status} by a later observation that showed the step succeed"
        last = max(sent, key=lambda a: a["requested_at"])  # whose action made the step succeed
        whose = (
            f"the automatic {last['kind']}"
            if last["actor"].startswith("policy:")
            else f"{last['actor']}'s {last['kind']}"
        )
        return f"{status}: {whose} at {_when(last['requested_at'])} succeeded"
    with services.store.engine.connect() as conn:
        earlier = [a for kind in ("resolve", "ignore") for a in q.actions_of(conn, exception["id"], kind)]
    if not earlier:
        return status
    last = max(earlier, key=lambda a: a["requested_at"])
    return f"{status} by {last['actor']} at {_when(last['requested_at'])}"


def _when(moment: Any) -> str:
    return f"{as_utc(moment):%a %d %b %H:%M} UTC"


def entry_for(services: Services, request: Request, **parts: Any) -> Entry:
    role = roles.audited_role(services.config, request.actor)
    text = summary(target=request.target, note=request.note, payload=request.payload, **parts)
    detail = {"job_id": request.job_id} if request.job_id else {}  # a bulk item's refusal says whose it was
    return Entry(request.actor, role, request.kind, request.exception_id, text, detail=detail)


def refuse(
    services: Services, entry: Entry, status: str, reason: str, result: str = "refused", skipped: str | None = None
) -> ActionResult:
    """A refused or impossible action changes nothing but the audit log; ``skipped`` says it was
    needless, not wrong (already resolved), which the audit entry keeps for the bulk job's count."""
    entry.result, entry.detail = result, {**entry.detail, "reason": reason}
    if skipped:
        entry.detail["skipped"] = skipped
    with services.store.writing() as conn:
        ledger.audit(conn, entry, services.clock())
    return ActionResult(False, status, _sentence(reason), skipped=skipped)


def run_partner_action(
    services: Services, request: Request, exception: dict[str, Any], prepare: Prepare
) -> ActionResult:
    entry = entry_for(services, request)
    if (
        request.kind == "reroute"
        and request.target
        and not roles.may_send_to(services.config, request.actor, request.target)
    ):
        scope = roles.scope_of(services.config, request.actor)
        reason = (
            f"{request.target} is outside your partners ({scope}); a lead whose partners include it moves orders there"
        )
        return refuse(services, entry, exception["status"], reason)
    moved = rerouted(services, exception) if request.kind == "reroute" else None
    if moved is not None:  # moving it again would leave the order live at two partners, or bounce it back
        reason = f"{moved[0]}, where it is now: a second reroute would move it again"
        return refuse(services, entry, exception["status"], reason, skipped="already rerouted")
    if exception["status"] == RESOLVED:
        with services.store.engine.connect() as conn:
            done = [a for a in q.actions_of(conn, exception["id"], request.kind) if a["status"] == "succeeded"]
        if done:  # the same action asked twice (a double click, a colleague at the same moment)
            return _already_done(services, entry, exception, done[0])
        reason = (
            f"the exception is already {closed_by(services, exception)}: nothing was sent. If the order still "
            "fails, its next failure opens the exception again"
        )
        return refuse(services, entry, exception["status"], reason, skipped="already resolved")
    waiting = _retry_after_pending(services, request, exception)
    if waiting:
        return refuse(services, entry, exception["status"], waiting)
    try:
        plan = prepare(services, request, exception)
    except (NotActionable, InvalidEdit) as err:
        return refuse(services, entry, exception["status"], str(err), result="failed")
    entry = entry_for(services, request, **plan.summary)
    try:
        claimed = _claim(services, request, exception, entry, plan)
    except InProgress as err:
        return refuse(services, entry, exception["status"], str(err))
    if not isinstance(claimed, Claim):
        return _already_done(services, entry, exception, claimed)
    return _run(services, request, exception, entry, plan, claimed)


def _retry_after_pending(services: Services, request: Request, exception: dict[str, Any]) -> str | None:
    """The partner's Retry-After from the last attempt of this action, while it still runs: a
    person clicking again must not hammer a partner that asked for a pause."""
    with services.store.engine.connect() as conn:
        earlier = q.actions_of(conn, exception["id"], request.kind)
    last = earlier[0] if earlier else None
    outcome = (last or {}).get("outcome") or {}
    if not last or not outcome.get("retry_after") or not last.get("finished_at"):
        return None
    until = as_utc(last["finished_at"]) + timedelta(seconds=float(outcome["retry_after"]))
    if services.clock() >= until:
        return None
    partner = f"the partner {outcome['partner']}" if outcome.get("partner") else "the partner"
    return f"{partner} asked to wait until {until:%H:%M:%S} UTC (Retry-After); nothing was sent, try again then"


def _claim(
    services: Services, request: Request, exception: dict[str, Any], entry: Entry, plan: Plan
) -> Claim | dict[str, Any]:
    now = services.clock()
    asked = {**plan.summary, "note": request.note, "target": request.target, "edited": request.payload is not None}
    with services.store.writing() as conn:
        claimed = ledger.claim(
            conn, exception, request.kind, request.actor, asked, now, services.config.file.actions.lease, request.job_id
        )
        if isinstance(claimed, Claim):
            q.set_exception(conn, exception["id"], {"status": "retrying", "updated_at": now})
            entry.detail = {"action_id": claimed.action_id, "idempotency_key": claimed.key, "attempt": claimed.attempts}
            ledger.audit(conn, entry, now)
    return claimed


def _already_done(services: Services, entry: Entry, exception: dict[str, Any], earlier: dict[str, Any]) -> ActionResult:
    reason = f"already done by {earlier['actor']} ({earlier['id']}); nothing was sent again"
    skipped = f"already {DONE.get(earlier['kind'], 'done')}"
    refuse(services, entry, exception["status"], reason, skipped=skipped)
    return ActionResult(True, exception["status"], _sentence(reason), earlier["id"], skipped)


def _run(
    services: Services, request: Request, exception: dict[str, Any], entry: Entry, plan: Plan, claim: Claim
) -> ActionResult:
    outcome: dict[str, Any] = {"steps": [], "attempt": claim.attempts}
    name = f"syncwatch.{request.kind}"
    with partner_time() as spent, services.tracer.start_as_current_span(name, context=continuing(*plan.trace)) as span:
        span.set_attributes({"syncwatch.exception_id": exception["id"], "syncwatch.actor": request.actor})
        try:
            message, ok = plan.execute(services, claim, outcome), True
        except ActionError as err:
            message, ok = _failure(err, outcome), False
        span.set_attribute("syncwatch.action.outcome", "succeeded" if ok else "failed")
    outcome["partner_ms"] = round(sum(spent) * 1000, 3)
    return _finish(services, request, exception, entry, claim, ok, outcome, message)


def _failure(err: ActionError, outcome: dict[str, Any]) -> str:
    definitive = getattr(err, "definitive", True)
    outcome.update({"reason": str(err), "definitive": definitive, "error": type(err).__name__})
    if isinstance(err, PartnerError):
        outcome.update({"partner": err.partner, "status_code": err.status, "retry_after": err.retry_after})
    done = "; ".join(outcome["steps"])
    return f"{err}; done so far: {done}" if done else str(err)


def _finish(
    services: Services,
    request: Request,
    exception: dict[str, Any],
    entry: Entry,
    claim: Claim,
    ok: bool,
    outcome: dict[str, Any],
    message: str,
) -> ActionResult:
    now = services.clock()
    with services.store.writing() as conn:
        ledger.finish(conn, claim, ok, outcome, now)
        q.set_exception(conn, exception["id"], _status_values(ok, outcome, now))
    services.flush()
    if request.settle:
        Correlator(services.store, services.config).run_pass()
    with services.store.engine.connect() as conn:
        after = q.exception_target(conn, exception["id"]) or exception
    entry.result = "succeeded" if ok else "failed"
    entry.detail = {**entry.detail, **_sla(exception, after), "outcome": outcome}
    with services.store.writing() as conn:
        ledger.audit(conn, entry, services.clock())
    return ActionResult(
        ok, after["status"], _result_sentence(request.kind, ok, message, after["status"]), claim.action_id
    )


def _status_values(ok: bool, outcome: dict[str, Any], now: Any) -> dict[str, Any]:
    if not ok:
        return {"status": "open", "updated_at": now}
    if outcome.get("resolved_without_request"):
        return {"status": "resolved", "resolved_at": now, "resolved_by_observation_id": None, "updated_at": now}
    return {"status": "retrying", "updated_at": now}


def _sla(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {
        "sla_before": before.get("sla_state"),
        "sla_after": after.get("sla_state"),
        "status_before": before["status"],
        "status_after": after["status"],
    }


def _result_sentence(kind: str, ok: bool, message: str, status: str) -> str:
    if not ok:
        return f"{kind.capitalize()} failed: {message}; the exception stays {status}."
    then = {"resolved": "the exception is resolved", "retrying": "waiting for the partner to confirm it"}
    return f"{message}; {then.get(status, f'the exception is {status}')}."


def _sentence(text: str) -> str:
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."
