"""Replay: re-deliver a dead-lettered message through the ERP, which removes it from its
dead-letter list only once the re-delivery went through."""

from __future__ import annotations

from typing import Any

from actions.errors import NotActionable
from actions.kinds import erp
from actions.ledger import Claim
from actions.runner import Plan, Request
from actions.services import Services
from syncwatch.store import actions as q

REPLAYS = "dead_lettered"
"""The one category with a message to re-deliver."""


def prepare(services: Services, request: Request, exception: dict[str, Any]) -> Plan:
    if exception["category"] != REPLAYS:
        raise NotActionable(f"replay re-delivers a dead-lettered message; this exception is {exception['category']}")
    holder = next((n for n, p in services.config.file.partners.items() if p.kind == "erp"), None)
    if holder is None:
        raise NotActionable("no ERP is configured under [partners], so there is no dead-letter list to replay from")
    with services.store.engine.connect() as conn:
        keys = q.transaction_keys_of(conn, exception["transaction_id"])
        observations = q.step_observations(conn, exception["observation_id"], exception["transaction_id"])

    def execute(services: Services, claim: Claim, outcome: dict[str, Any]) -> str:
        client = services.client(holder)
        letter = erp.dead_letter_for(client, keys)
        if letter is None:
            raise NotActionable(
                f"the dead-letter list of {holder} holds nothing for this order: it was replayed or purged there;"
                " check with its team, then resolve with a note"
            )
        erp.redeliver(client, str(letter["id"]), claim.key)
        outcome.update({"partner_ref": letter["id"]})
        outcome["steps"].append(f"re-delivered {letter['id']} through {holder}; it left the dead-letter list")
        return f"Re-delivered message {letter['id']} through {holder}"

    first = observations[0] if observations else {}
    return Plan({"partner": holder}, execute, (first.get("trace_id"), first.get("span_id")))
