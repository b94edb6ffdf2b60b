"""Line-level fulfilment: which lines of an order have shipped, which are still outstanding, and
when those are due.

A split order ships from several warehouses and a backordered line ships days after the rest.
The order's shipping stage is reached by its first shipment — that is when the customer's
parcel left — but the order is complete only when every line has shipped. An outstanding line
is due by the date the ERP promised for it when it was backordered, otherwise by the shipping
stage's own due time (the marketplace's promised ship-by date). Where the order does not say how
many lines it has, or a shipment does not say what it carried, nothing is concluded from lines.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

import orjson

from collectors.keys import parse_pointer, resolve_pointer
from correlator.processes import Member, first_attribute, time_attribute
from correlator.sla import SlaResult, stage_state
from syncwatch.config.schema import LinesDef
from syncwatch.model import SlaState

log = logging.getLogger(__name__)
_pointer = cache(parse_pointer)


class Shipment(NamedTuple):
    at: datetime
    system: str
    reference: str  # the shipment id (else the notice's identity keys): a notice sent twice counts once
    lines: tuple[tuple[str, float], ...] | None  # (sku, quantity); None: the notice did not say
    member: Member


@dataclass(frozen=True, slots=True)
class Lines:
    ordered: int | None
    shipments: tuple[Shipment, ...]
    backordered: tuple[str, ...]
    backorder_due: datetime | None

    @property
    def known(self) -> bool:
        """Whether lines can be counted: the order says how many, and every shipment what it carried."""
        return self.ordered is not None and all(s.lines is not None for s in self.shipments)

    @property
    def shipped(self) -> dict[str, datetime]:
        """Each shipped SKU and when its first shipment left."""
        first: dict[str, datetime] = {}
        for shipment in self.shipments:
            for sku, _ in shipment.lines or ():
                first.setdefault(sku, shipment.at)
        return first

    @property
    def outstanding(self) -> int | None:
        if not self.known:
            return None
        return max(0, self.ordered - len(self.shipped))  # type: ignore[operator]

    def as_json(self) -> str:
        """What the transactions table stores and the transaction page shows."""
        shipped = self.shipped
        return orjson.dumps(
            {
                "ordered": self.ordered,
                "shipped": len(shipped),
                "outstanding": self.outstanding,
                "backordered": [sku for sku in self.backordered if sku not in shipped],
                "backorder_due": self.backorder_due,
                "shipments": [
                    {
                        "at": s.at,
                        "system": s.system,
                        "reference": s.reference,
                        "lines": [{"sku": sku, "qty": qty} for sku, qty in s.lines] if s.lines is not None else None,
                    }
                    for s in self.shipments
                ],
            }
        ).decode()


class LineCheck(NamedTuple):
    """The SLA of the lines after the first shipment: due when, in what state, and (once every
    line has shipped) the shipment that completed the order."""

    stage: str
    lines: Lines
    due_at: datetime | None
    state: SlaState | None
    check_at: datetime | None
    completed_by: Member | None


def read_lines(rule: LinesDef, shipping: Sequence[Member], described: Sequence[Member]) -> Lines:
    """The lines of one order: ``shipping`` are the members that reached the shipping stage, in
    time order; ``described`` those whose attributes were kept."""
    tokens = _pointer(rule.shipped)
    shipments: dict[str, Shipment] = {}
    for member in shipping:
        named = [value for key_type, value in member.nodes if key_type == rule.shipment_key]
        reference = ",".join(named) or member.subject or str(member.id)
        if reference not in shipments:
            shipments[reference] = Shipment(
                member.start, member.system, reference, _shipped_lines(rule, tokens, member), member
            )
    return Lines(
        ordered=_count(first_attribute(described, rule.count_attribute)),
        shipments=tuple(shipments.values()),
        backordered=_skus(first_attribute(described, rule.backordered_attribute)),
        backorder_due=time_attribute(described, rule.backorder_due_attribute),
    )


def check_lines(stage: str, lines: Lines, stage_due: datetime | None, now: datetime, share: float) -> LineCheck | None:
    """The lines' SLA, where the order shipped in more than one part or has lines outstanding;
    their budget runs from the first shipment, like a stage's from the stage before it."""
    if not lines.shipments or not lines.known:
        return None
    shipped, first = lines.shipped, lines.shipments[0].at
    outstanding = lines.outstanding
    if not outstanding and len(lines.shipments) == 1:
        return None  # shipped whole: the stage's own SLA says it all
    waiting_on = [sku for sku in lines.backordered if sku not in shipped]
    if outstanding:
        only_backorders = outstanding <= len(waiting_on)
        due = lines.backorder_due if only_backorders and lines.backorder_due else stage_due
        state, check = stage_state(None, first, due, now, share)
        return LineCheck(stage, lines, due, state, check, None)
    last_sku = max(shipped, key=lambda sku: shipped[sku])
    completed_at = shipped[last_sku]
    due = lines.backorder_due if last_sku in lines.backordered and lines.backorder_due else stage_due
    state, _ = stage_state(completed_at, first, due, now, share)
    completing = next(s.member for s in lines.shipments if s.at == completed_at)
    return LineCheck(stage, lines, due, state, None, completing)


def with_lines(sla: SlaResult, check: LineCheck | None) -> SlaResult:
    """The transaction's SLA with its lines: complete only when every line shipped, breached or
    at risk when they are, and due by the earlier of the next stage and the outstanding lines."""
    if check is None:
        return sla
    outstanding = check.completed_by is None
    complete = sla.complete and not outstanding
    states = {sla.state, check.state}
    if complete:
        state = SlaState.BREACHED if SlaState.BREACHED in states else SlaState.MET
    else:
        state = next((s for s in (SlaState.BREACHED, SlaState.AT_RISK) if s in states), SlaState.ON_TRACK)
    late = check.state in (SlaState.BREACHED, SlaState.AT_RISK)
    pending = [t for t in ((None if sla.complete else sla.due_at), check.due_at if outstanding else None) if t]
    checks = [t for t in (sla.check_at, check.check_at) if t]
    return replace(
        sla,
        state=state,
        complete=complete,
        stage_at_fault=sla.stage_at_fault or (check.stage if late else None),
        due_at=min(pending) if pending and not complete else None,
        check_at=min(checks) if checks and not complete else None,
        lines=check,
    )


def _shipped_lines(rule: LinesDef, tokens: tuple[str, ...], member: Member) -> tuple[tuple[str, float], ...] | None:
    try:
        found = resolve_pointer(orjson.loads(member.payload or b"null"), tokens)
    except orjson.JSONDecodeError:
        log.warning("observation %s: payload is not JSON; its shipped lines are unknown", member.id)
        return None
    if not isinstance(found, list):
        return None
    lines = []
    for line in found:
        if not isinstance(line, dict) or not isinstance(line.get(rule.sku), str):
            return None
        quantity = line.get(rule.quantity, 1)
        lines.append((line[rule.sku], quantity if isinstance(quantity, int | float) else 1))
    return tuple(lines)


def _count(value: Any) -> int | None:
    try:
        count = int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None
    return count if count is not None and count > 0 else None


def _skus(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return ()
