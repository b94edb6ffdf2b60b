"""Reroute: move a fulfilment to an alternate warehouse or 3PL, never leaving two live.

Order of work: find the order's live fulfilments at the original, cancel each and read the cancel
back; only then create at the alternate. A failure stops the work where it is, and the outcome
says exactly what was done and what was not; running the reroute again picks up from there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actions import roles
from actions.errors import NotActionable, PartnerError, PartnerRejected
from actions.kinds import fulfilment
from actions.ledger import Claim
from actions.runner import Plan, Request
from actions.services import Services
from actions.steps import Step, failed_step, sent_to
from syncwatch.config import Config
from syncwatch.model import partners_of_kind, stage_label
from syncwatch.store import actions as q


def prepare(services: Services, request: Request, exception: dict[str, Any]) -> Plan:
    if not movable(exception):
        kind = str(exception["category"]).replace("_", " ")
        raise NotActionable(f"a reroute does not fix a {kind} exception: {_what_fixes(exception)}")
    reached = past_partner(services.config, exception)
    if reached:
        raise NotActionable(f"the order is already {stage_label(reached)}: a reroute would fulfil it a second time")
    with services.store.engine.connect() as conn:
        observations = q.step_observations(conn, exception["observation_id"], exception["transaction_id"])
        keys = q.transaction_keys_of(conn, exception["transaction_id"])
    original = _original(services, exception, observations)
    alternate = _alternate(services, original, request.target)
    orders = keys.get("erp_order", [])
    if not orders:
        raise NotActionable("the transaction has no ERP sales order yet, so there is no fulfilment to move")
    body = _original_body(services, observations)
    summary = {"partner": original, "alternate": alternate, "sales_order": orders[0]}

    def execute(services: Services, claim: Claim, outcome: dict[str, Any]) -> str:
        return _move(services, (original, alternate), orders[0], body, claim, outcome)

    first = observations[0] if observations else {}
    return Plan(summary, execute, (first.get("trace_id"), first.get("span_id")))


def _what_fixes(exception: Mapping[str, Any]) -> str:
    suggested = exception.get("suggested_action")
    return f"its runbook suggests {suggested}" if suggested else "a person follows it up (see its runbook)"


def _original(services: Services, exception: dict[str, Any], observations: list[dict[str, Any]]) -> str:
    try:
        partner = failed_step(services, observations, None).partner if observations else None
    except NotActionable:
        partner = None
    partner = partner if partner in _fulfilers(services) else exception.get("partner")
    if partner not in _fulfilers(services):
        raise NotActionable("the failed step was not sent to a warehouse or 3PL, so there is nothing to reroute")
    return str(partner)


def _alternate(services: Services, original: str, target: str | None) -> str:
    alternates = services.config.file.partners[original].alternates
    if target is None:
        raise NotActionable(f"name the system to reroute to: {', '.join(alternates) or 'none configured'}")
    if target not in alternates or target not in _fulfilers(services):
        raise NotActionable(f"the alternates of {original} are {', '.join(alternates)}; {target} is not one of them")
    return target


def _fulfilers(services: Services) -> set[str]:
    return fulfilers(services.config)


def fulfilers(config: Config) -> set[str]:
    """The partners an order can be rerouted between: warehouses and 3PLs, whose APIs we speak."""
    return set(partners_of_kind(config.file.partners, *fulfilment.APIS))


def failed_at(services: Services, observation: dict[str, Any] | None, exception: Mapping[str, Any]) -> str:
    """The partner an exception's failed step was sent to (a 3PL that is down is reported by the ERP,
    whose exception it then is), by the address its call went to; else the exception's system."""
    try:
        return sent_to(services, [observation]) if observation else str(exception["system"])
    except NotActionable:
        return str(exception["system"])


def choices(config: Config, exception: Mapping[str, Any], failing: str | None = None) -> tuple[str | None, list[str]]:
    """What a reroute of this exception would move the order from, and the alternates it may go to:
    the partner its failed step went to (``failing``, see ``failed_at``), else the failing system,
    else the order's partner, the first that is a warehouse or 3PL (the action reads the step again)."""
    movable = fulfilers(config)
    context = exception.get("context") or {}
    candidates = (failing, exception.get("system"), exception.get("partner"), context.get("partner"))
    original = next((name for name in candidates if name in movable), None)
    if original is None:
        return None, []
    return original, [name for name in config.file.partners[original].alternates if name in movable]


MOVABLE = frozenset({"partner_unavailable", "timeout", "throttled"})
"""Failures a move to another partner fixes: the partner is down, slow or throttling. The alternate
would reject what was rejected (validation) too; a stuck order, a duplicate notice or a dead letter
has no failed fulfilment to move."""


def targets(config: Config, actor: str) -> list[str]:
    """The partners a bulk reroute by ``actor`` may move orders to."""
    return sorted(p for p in fulfilers(config) if roles.may_send_to(config, actor, p))


def movable(exception: Mapping[str, Any]) -> bool:
    """Whether a move to another partner can fix this exception: the runbook suggests a reroute, or
    the failure is one a move fixes (``MOVABLE``) and there is a step to act on."""
    suggested = exception.get("suggested_action")
    return suggested == "reroute" or (suggested is not None and exception.get("category") in MOVABLE)


def past_partner(config: Config, exception: Mapping[str, Any]) -> str | None:
    """The stage after the hand-over to a partner that the order reached (shipped, confirmed…), if
    any: its fulfilment is done, and a move would fulfil it a second time elsewhere."""
    process = config.file.processes.get(str(exception.get("type") or "order"))
    current = exception.get("current_stage")
    if process is None or not process.partner_stage or not current:
        return None
    names = [stage.name for stage in process.stages]
    if current in names and names.index(current) > names.index(process.partner_stage):
        return str(current)
    return None


def left_out(config: Config, exception: Mapping[str, Any], failing: str, target: str) -> str | None:
    """Why a bulk reroute to ``target`` leaves this exception out ('already with 3pl-parcelpro'),
    where one by one the lead would not have rerouted it there either. ``failing``: the partner its
    failed step was sent to (the ERP reports a 3PL that is down, so the exception's system is the ERP's)."""
    if not movable(exception):
        return f"not reroutable ({exception.get('category')})"
    if past_partner(config, exception):
        return "already past its partner (shipped)"
    original = failing if failing in fulfilers(config) else choices(config, exception)[0]
    if original is None:
        return "not at a warehouse or 3PL"
    if original == target:
        return f"already with {target}"
    if target not in config.file.partners[original].alternates:
        return f"at {original}, which does not reroute to {target}"
    return None


def _original_body(services: Services, observations: list[dict[str, Any]]) -> dict[str, Any] | None:
    try:
        step: Step = failed_step(services, observations, None)
    except NotActionable:
        return None
    return step.body


def _move(
    services: Services,
    partners: tuple[str, str],
    sales_order: str,
    body: dict[str, Any] | None,
    claim: Claim,
    outcome: dict[str, Any],
) -> str:
    original, alternate = services.client(partners[0]), services.client(partners[1])
    steps: list[str] = outcome["steps"]
    outcome["done_at_alternate"] = False
    for doc in fulfilment.live(original, sales_order):
        if not fulfilment.cancel_confirmed(original, str(doc["id"]), f"{claim.key}.cancel.{doc['id']}"):
            steps.append(f"nothing created at {alternate.name}")
            raise PartnerRejected(f"{original.name} did not confirm the cancel of {doc['id']}", original.name)
        steps.append(f"cancelled {doc['id']} at {original.name} (confirmed)")
    if not steps:
        steps.append(f"{original.name} holds no live fulfilment for {sales_order} (checked)")
    outcome["original_clear"] = True
    existing = fulfilment.live(alternate, sales_order)
    try:
        created = existing[0] if existing else fulfilment.create(alternate, sales_order, body, f"{claim.key}.create")
    except PartnerError:
        steps.append(f"nothing created at {alternate.name}: {sales_order} has no live fulfilment until this runs again")
        raise
    steps.append(f"{'found' if existing else 'created'} {created.get('id')} at {alternate.name}")
    outcome.update({"done_at_alternate": True, "partner_ref": created.get("id")})
    return f"Rerouted {sales_order} from {original.name} to {alternate.name} ({created.get('id')})"
