"""Retry: send the failed request again, as stored (or as the agent edited it), once.

The Idempotency-Key comes from the claim, so a repeat after a timeout carries the same key and
the partner deduplicates; where the first try may have landed (a timeout), the partner is asked
first whether the document already exists, and nothing is created twice.
"""

from __future__ import annotations

from typing import Any

from actions.client import PartnerClient
from actions.errors import NotActionable
from actions.kinds import erp, fulfilment
from actions.ledger import Claim
from actions.runner import Plan, Request
from actions.services import Services
from actions.steps import Step, failed_step, sent_to
from syncwatch.store import actions as q

UNCERTAIN = {"timeout"}
"""Categories where the failed request may have been carried out anyway."""


def prepare(services: Services, request: Request, exception: dict[str, Any]) -> Plan:
    with services.store.engine.connect() as conn:
        observations = q.step_observations(conn, exception["observation_id"], exception["transaction_id"])
    if observations and not any(o["outcome"] == "error" for o in observations):
        # A stage overdue after a call that succeeded: sending that call again would repeat it, not fix anything.
        last = observations[0]
        raise NotActionable(
            f"nothing failed here to send again: {last['operation']} at {last['system']} succeeded, and the order"
            f" is overdue after it; ask {exception['system']} as the runbook says"
        )
    step = failed_step(services, observations, request.payload)
    uncertain = exception["category"] in UNCERTAIN
    summary = {"partner": step.partner, "call": f"{step.method} {step.path}", "body": step.body}

    def execute(services: Services, claim: Claim, outcome: dict[str, Any]) -> str:
        return _send(services.client(step.partner), step, claim, outcome, uncertain)

    first = observations[0]
    return Plan(summary, execute, (first["trace_id"], first["span_id"]))


def _send(client: PartnerClient, step: Step, claim: Claim, outcome: dict[str, Any], uncertain: bool) -> str:
    outcome["partner"] = client.name  # whose circuit the automatic retries' outcomes count for (actions.breaker)
    maybe_landed = uncertain or (
        claim.earlier is not None and not (claim.earlier["outcome"] or {}).get("definitive", True)
    )
    found = _existing(client, step) if maybe_landed else None
    if found:
        outcome.update({"resolved_without_request": True, "found": found})
        outcome["steps"].append(f"found {found} already at {client.name}; sent nothing")
        return f"{client.name} already holds {found}; nothing was sent again"
    answer = client.send(step.method, step.path, body=step.body, idempotency_key=claim.key)
    ref = _reference(answer.body)
    outcome.update({"status_code": answer.status, "partner_ref": ref, "edited": step.edited})
    outcome["steps"].append(f"{step.method} {step.path} at {client.name}: {answer.status}")
    return f"Retried {step.method} {step.path} at {client.name}: {answer.status}{f' ({ref})' if ref else ''}"


def _existing(client: PartnerClient, step: Step) -> str | None:
    """The document the uncertain first try may have created, by the reference its body carries."""
    body = step.body or {}
    api = fulfilment.api_of(client)
    if api is not None and step.path == api.collection and body.get(api.order_field):
        docs = fulfilment.live(client, str(body[api.order_field]))
        return str(docs[0]["id"]) if docs else None
    if client.partner.kind == "erp" and step.path == "/sales-orders" and body.get("external_ref"):
        orders = erp.orders_for(client, str(body["external_ref"]))
        return str(orders[0]["sales_order"]) if orders else None
    return None


def _reference(body: dict[str, Any]) -> str | None:
    value = body.get("sales_order") or body.get("id")
    return str(value) if value else None


def partner_of(services: Services, exception: dict[str, Any]) -> str | None:
    """The partner a retry of this exception would go to, where that can be told from its failure."""
    with services.store.engine.connect() as conn:
        observations = q.step_observations(conn, exception["observation_id"], exception["transaction_id"])
    if not observations:
        return None
    try:
        return sent_to(services, observations)
    except NotActionable:
        return None
