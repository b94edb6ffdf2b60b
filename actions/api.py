"""The action layer's public API: what the dashboard and the CLI call. Refusals return, never raise."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actions import bulk, ledger, manual, replay, reroute, retry, roles, steps
from actions.bulk import BULK_ACTIONS
from actions.results import ActionResult, BulkPlan
from actions.runner import Request, closed_by, entry_for, refusal, refuse, rerouted, run_partner_action
from actions.services import Services, services_for
from syncwatch.config import Config
from syncwatch.store import Store
from syncwatch.store import actions as q
from syncwatch.store import alerts as alert_outbox

ACTIONS = roles.EXCEPTION_ACTIONS
Handler = Callable[[Services, Request, dict[str, Any]], ActionResult]
HANDLERS: dict[str, Handler] = {
    "retry": lambda s, r, e: run_partner_action(s, r, e, retry.prepare),
    "reroute": lambda s, r, e: run_partner_action(s, r, e, reroute.prepare),
    "replay": lambda s, r, e: run_partner_action(s, r, e, replay.prepare),
    "resolve": manual.close,
    "ignore": manual.close,
    "reopen": manual.reopen,
    "assign": manual.assign,
    "note": manual.note,
}

__all__ = [
    "ACTIONS",
    "BULK_ACTIONS",
    "ActionResult",
    "BulkPlan",
    "allowed_actions",
    "bulk_failure_reasons",
    "bulk_status",
    "cancel_bulk",
    "perform",
    "plan_bulk",
    "recorded_body",
    "role_of",
    "start_bulk",
]


def role_of(config: Config, actor: str) -> str:
    return roles.role_of(config, actor)


NOTHING_TO_SEND = ("stuck", "duplicate_notice", replay.REPLAYS)
"""Categories with no failed request to send: nothing failed, or a message waits in a dead-letter list (Replay)."""


def reroute_choices(
    store: Store, config: Config, exception_row: Any, actor: str | None = None
) -> tuple[str | None, list[str]]:
    """Where a reroute of this exception moves the order from, and the alternates it may go to
    (those ``actor`` may send orders to, if given)."""
    row, services = dict(exception_row), services_for(store, config)
    step = row.get("observation_id")
    with store.engine.connect() as conn:
        observation = q.observation_systems(conn, [int(step)]).get(int(step)) if step else None
    original, alternates = reroute.choices(config, row, reroute.failed_at(services, observation, row))
    return original, [a for a in alternates if actor is None or roles.may_send_to(config, actor, a)]


def reroute_targets(config: Config, actor: str) -> list[str]:
    """The warehouses and 3PLs ``actor``'s bulk reroute may move orders to; its plan leaves out the
    orders that cannot go."""
    return reroute.targets(config, actor)


def allowed_actions(config: Config, actor: str, exception_row: Any) -> set[str]:
    """What to offer on this exception: what the actor's role may do, less what cannot apply to
    it (Replay needs a dead letter; Retry a failed request; Reroute a failure a move fixes, on an
    order not shipped yet)."""
    allowed = roles.allowed_actions(config, actor, exception_row)
    category = exception_row["category"]
    if category != replay.REPLAYS:
        allowed.discard("replay")
    if category in NOTHING_TO_SEND:
        allowed.discard("retry")
    if not reroute.movable(exception_row) or reroute.past_partner(config, exception_row):
        allowed.discard("reroute")
    return allowed


def perform(
    store: Store,
    config: Config,
    *,
    action: str,
    exception_id: str,
    actor: str,
    note: str | None = None,
    payload: dict[str, Any] | None = None,
    target: str | None = None,
) -> ActionResult:
    """Run one action on one exception as ``actor``: checked, claimed, sent, audited."""
    request = Request(action, exception_id, actor, note, payload, target)
    return run(services_for(store, config), request)


def run(services: Services, request: Request) -> ActionResult:
    with services.store.engine.connect() as conn:
        exception = q.exception_target(conn, request.exception_id)
    reason = refusal(services, request, exception)
    if reason is not None:
        status = exception["status"] if exception else "unknown"
        return refuse(services, entry_for(services, request), status, reason)
    assert exception is not None
    return HANDLERS[request.kind](services, request, exception)


def rerouted_text(store: Store, config: Config, exception_row: Any) -> str | None:
    """'alex rerouted it to wms (WMS-7) at Sat 28 Nov 06:17 UTC' where a reroute of it succeeded:
    Retry and Reroute are then refused, since either would fulfil the order twice."""
    moved = rerouted(services_for(store, config), dict(exception_row))
    return moved[0] if moved else None


def closed_text(store: Store, config: Config, exception_row: Any) -> str:
    """'resolved by sam at Fri 27 Nov 19:11 UTC': who closed an exception that is no longer active."""
    return closed_by(services_for(store, config), dict(exception_row))


def recorded_body(store: Store, exception_row: Any) -> dict[str, Any] | None:
    """The body a retry of this exception would send again, as the action layer finds it."""
    with store.engine.connect() as conn:
        observations = q.step_observations(conn, exception_row["observation_id"], exception_row["transaction_id"])
    return steps.first_body(observations)


def plan_bulk(
    store: Store, config: Config, *, action: str, filters: dict[str, Any], actor: str, target: str | None = None
) -> BulkPlan:
    """Every exception the filter matches (not a page of them), counted by partner; nothing runs yet.
    ``target`` is the assignee of a bulk assign, or the partner a bulk reroute moves orders to.
    Raises ValueError for an unknown action, filter or target."""
    return bulk.plan(services_for(store, config), action, filters, actor, target)


def refuse_bulk(store: Store, config: Config, *, action: str, filters: dict[str, Any], actor: str, reason: str) -> None:
    """Record in the audit log a bulk job refused before planning, as every refusal is."""
    bulk.refuse_unplanned(services_for(store, config), action, actor, filters, reason)


def start_bulk(store: Store, config: Config, plan: BulkPlan, actor: str) -> str:
    """Start the job in the background within the partners' rate limits; returns the job id.
    Raises ``actions.bulk.Refused`` (audited) when the actor is not a lead."""
    return bulk.start(services_for(store, config), plan, actor, run)


def bulk_status(store: Store, job_id: str) -> dict[str, Any]:
    """The job's progress: ``succeeded`` and ``failed`` count what it did; ``skipped`` what it found already done."""
    return bulk.status(store, job_id)


def bulk_failure_reasons(store: Store, job_id: str) -> list[tuple[str, int]]:
    """Why a job's items failed, most frequent first: what a lead reads before running it again."""
    return bulk.failure_reasons(store, job_id)


def cancel_bulk(store: Store, job_id: str, actor: str, config: Config) -> ActionResult:
    """Stop a job between items: only its starter or a lead may."""
    return bulk.cancel(store, job_id, actor, config)


def deliver_alerts_again(store: Store, config: Config, actor: str) -> ActionResult:
    """Alerts given up on, delivered again from `serve`'s next run: for after the webhook is mended.
    A lead's to ask; refused or done, it is in the audit log."""
    services = services_for(store, config)
    entry = ledger.Entry(actor, roles.audited_role(config, actor), "deliver alerts", None, "alerts given up on")
    if not roles.may(config, actor, "alerts"):
        reason = f"only a lead may send alerts again, and {actor} is {roles.described(config, actor)}"
        return refuse(services, entry, "given up", reason)
    with store.writing() as conn:
        again = alert_outbox.deliver_again(conn)
        entry.result, entry.detail = "succeeded", {"alerts": again}
        ledger.audit(conn, entry, services.clock())
    return ActionResult(
        True, "waiting", f"{again} alert{'s' if again != 1 else ''} will be delivered at `serve`'s next run."
    )
