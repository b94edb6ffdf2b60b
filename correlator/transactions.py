"""One transaction row from a component's members: stages reached, SLA state, business context."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from correlator.components import Component
from correlator.lines import check_lines, read_lines, with_lines
from correlator.processes import Member, Process, first_attribute, time_attribute
from correlator.sla import SlaResult, evaluate, stages_json


class Stager:
    """The stages a member reaches; cached, since a week has only a few hundred distinct shapes.
    Paths no template names have their ids folded (``GET /products/{id}``), but a span may carry
    any name, so a long-running `serve` starts the cache afresh once it holds ``LIMIT`` shapes."""

    LIMIT = 50_000

    def __init__(self) -> None:
        self._cache: dict[tuple[str, ...], tuple[str, ...]] = {}

    def stages_of(self, process: Process, member: Member) -> tuple[str, ...]:
        shape = (process.name, member.system, member.operation, member.kind, member.outcome)
        stages = self._cache.get(shape)
        if stages is None:
            if len(self._cache) >= self.LIMIT:
                self._cache.clear()
            stages = self._cache[shape] = tuple(s.name for s in process.stages if s.reached_by(member))
        return stages


def transaction_row(
    component: Component, members: Sequence[Member], stager: Stager, now: datetime, at_risk_share: float
) -> tuple[SlaResult, dict[str, Any]]:
    """The transaction of ``component``, whose ``members`` are in (start, id) order."""
    process = component.process
    reached: dict[str, Member] = {}
    shipping: list[Member] = []
    ships = process.lines.stage if process.lines else None
    for member in members:
        for name in stager.stages_of(process, member):
            reached.setdefault(name, member)
            if name == ships:
                shipping.append(member)
    described = [m for m in members if m.attributes_json is not None]
    deadlines = _deadlines(process, described)
    sla = evaluate(process, {k: m.start for k, m in reached.items()}, deadlines, now, at_risk_share)
    lines = None
    if process.lines is not None:
        lines = read_lines(process.lines, shipping, described)
        stage_due = next(s.due_at for s in sla.stages if s.name == process.lines.stage)
        sla = with_lines(sla, check_lines(process.lines.stage, lines, stage_due, now, at_risk_share))
    first = reached.get(process.stages[0].name)
    partner = reached.get(process.partner_stage) if process.partner_stage else None
    context = _attribute_context(process, described)
    return sla, {
        "id": component.id,
        "type": process.name,
        # Without the key its process starts with (the order number), it is a piece of an order whose
        # own observations have not arrived or that a key rule misses: never a finished order.
        "status": "complete" if sla.complete and component.roots else "open",
        "sla_state": sla.state.value,
        "current_stage": sla.current_stage,
        "stage_at_fault": sla.stage_at_fault,
        "due_at": sla.due_at,
        "channel": first.system if first else None,
        "partner": partner.system if partner else None,
        "customer": context.get("customer"),
        "order_value": context.get("order_value"),
        "promised_at": min(deadlines.values()) if deadlines else None,
        "stages": stages_json(sla.stages),  # as text: a backlog holds 100k+ rows
        "lines": lines.as_json() if lines is not None and (lines.ordered or lines.shipments) else None,
        "started_at": members[0].start,
        "last_seen_at": members[-1].start,
        "observation_count": len(members),
        "sla_check_at": sla.check_at,
        "updated_at": now,
    }


def business_context(row: dict[str, Any]) -> dict[str, Any]:
    """What an exception of the transaction carries for the person working it."""
    promised = row["promised_at"]
    return {
        "channel": row["channel"],
        "partner": row["partner"],
        "customer": row["customer"],
        "order_value": row["order_value"],
        "promised_at": promised.isoformat() if promised else None,
    }


def _deadlines(process: Process, members: Sequence[Member]) -> dict[str, datetime]:
    found: dict[str, datetime] = {}
    for name in {s.deadline_attribute for s in process.stages if s.deadline_attribute}:
        deadline = time_attribute(members, name)
        if deadline is not None:
            found[name] = deadline
    return found


def _attribute_context(process: Process, members: Sequence[Member]) -> dict[str, str]:
    context = {}
    for name, attributes in process.context.items():
        value = first_attribute(members, *attributes)
        if value is not None:  # an amount sent as a double (2155.6) is told to the cent, as money is
            context[name] = f"{value:.2f}" if isinstance(value, float) else str(value)
    return context
