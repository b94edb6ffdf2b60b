"""The business behaviour of the network: what an order, a return or an inventory movement does,
which requests and events it causes and when, and where partners fail.

Drivers supply the clock's starting points and an ``Emitter``; everything here is decided from
one seeded ``random.Random`` so the same seed tells the same story.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from syncwatch.sim.catalog import BULK_UNITS, CARRIER_MIX, WAREHOUSES, Catalog, Item
from syncwatch.sim.clock import DAY, HOUR, MINUTE, SECOND, iso
from syncwatch.sim.faults import Fault, FaultProfile
from syncwatch.sim.hops import Attrs, Ctx, Emitter, Hop
from syncwatch.sim.ids import Ids
from syncwatch.sim.otlp_json import CLIENT, SERVER

ORDER_ATTR = {"marketplace-amz": "amz.order_id", "marketplace-b2b": "b2b.po_number"}
ORDER_KEY = {"marketplace-amz": "marketplace_order", "marketplace-b2b": "po_number"}
CAPTURE_ROUTE = {"marketplace-amz": "/orders", "marketplace-b2b": "/purchase-orders"}
ROUTED_TO_3PL = {"partner_down", "partner_timeout", "duplicate_notice"}
"""Faults that happen at a 3PL: an order drawing one is routed to a 3PL whatever its items."""
ONE_SHIPMENT = {*ROUTED_TO_3PL, "late_confirmation", "dead_letter", "throttled"}
"""Faults of one shipment: the order ships whole, so a sibling shipment cannot mask the fault."""
SHIPPED = "com.syncwatch.shipment.shipped"
RETURN_RECEIVED = "com.syncwatch.return.received"
DEAD_LETTERED = "com.syncwatch.message.dead_lettered"
RETURN_SHARE = 0.06
BACKORDER_SHARE = 0.04
STEPS = ("accepted_by_erp", "allocated", "released", "shipped", "confirmed", "invoiced")
"""An order's stages after capture, in the order the network reaches them: the first two the order's,
the others each shipment's."""
BACKORDER_LEAD = 5 * DAY
"""When the ERP promises a backordered line: the supplier's restock lead time (at most three
days) plus time to release, pick and ship it."""


def request_body(body: dict[str, Any]) -> Attrs:
    """The request a caller sent, on its client span of a failed call, as the live network records
    it: what an agent's Retry sends again."""
    return {"http.request.body": json.dumps(body, sort_keys=True)}


def channel_of(ref: str) -> str:
    """The marketplace an order id came from: B2B purchase orders are numbered ``PO-n``, Amazon's
    orders are not (``new_order`` mints both)."""
    return "marketplace-b2b" if ref.startswith("PO-") else "marketplace-amz"


@dataclass
class Record:
    """What the ground truth says about one transaction: its keys, stages and faults."""

    type: str
    id: str
    end: int
    keys: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    stages: dict[str, str] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    planned: dict[str, int] = field(default_factory=dict)
    """When each stage falls that the end cut off (earliest), or its fault: what a live network
    going on from the files has left to do. Not ground truth: the files never saw it."""
    carried: dict[str, Any] | None = None
    """An order the end cut off (``Network.order``): what a live network needs to carry it on."""

    def key(self, type_: str, value: str, at: int) -> None:
        """Like stages, a key exists in the files only if it was used before the window ended."""
        if at < self.end and value not in self.keys[type_]:
            self.keys[type_].append(value)

    def stage(self, name: str, at: int) -> None:
        """A stage is reached by its earliest step (split shipments ship in any order); steps after
        the end of the simulated window never happened, as far as the files know."""
        when = iso(at)
        if at < self.end and (name not in self.stages or when < self.stages[name]):
            self.stages[name] = when
        elif at >= self.end:
            self.planned[name] = min(at, self.planned.get(name, at))

    def shipped(self, shipment: str, lines: list[dict[str, Any]], at: int) -> None:
        """Which lines each shipment carried: an order is complete only when all of them shipped."""
        if at < self.end:
            self.extra.setdefault("shipments", {})[shipment] = lines

    def fault(self, fault: Fault, at: int, system: str, stage: str, detail: str) -> None:
        if at >= self.end:
            self.planned.setdefault(f"fault:{stage}", at)
        if at < self.end:
            self.faults.append(
                {
                    "name": fault.name,
                    "category": fault.category,
                    "needs_person": fault.needs_person,
                    "system": system,
                    "stage": stage,
                    "at": iso(at),
                    "detail": detail,
                }
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "id": self.id,
            **self.extra,
            "keys": dict(self.keys),
            "stages": self.stages,
            "faults": self.faults,
        }


@dataclass
class Order:
    channel: str
    ref: str
    customer: str
    lines: list[tuple[Item, int]]
    fault: Fault | None
    promised: int
    record: Record
    erp_order: str = ""

    @property
    def ref_attrs(self) -> Attrs:
        return {ORDER_ATTR[self.channel]: self.ref}

    @property
    def total(self) -> float:
        """What the buyer pays, as the marketplace reports it with the order (SP-API's OrderTotal)."""
        return sum(item.price_cents * qty for item, qty in self.lines) / 100


@dataclass
class Shipment:
    system: str
    warehouse: str
    lines: list[tuple[Item, int]]
    ctx: Ctx | None
    fulfillment: str = ""
    id: str = ""
    carrier: str = ""
    tracking: str = ""


def _times(planned: dict[str, int], stages: list[str] | tuple[str, ...]) -> dict[str, str]:
    """When each of ``stages`` falls that the end cut off: the stage itself, or the fault that stops it."""
    at = {}
    for stage in stages:
        when = planned.get(stage, planned.get(f"fault:{stage}"))
        if when is not None:
            at[stage] = iso(when)
    return at


class Network:
    """Two marketplaces, an ERP, a WMS and two 3PLs, as one state machine per transaction."""

    def __init__(self, rng: random.Random, profile: FaultProfile, emit: Emitter, end: int) -> None:
        self.rng = rng
        self.ids = Ids(rng)
        self.catalog = Catalog.build(rng)
        self.profile = profile
        self.emit = emit
        self.end = end

    # -- helpers ---------------------------------------------------------------------------------
    def between(self, low: int, high: int) -> int:
        return low + int(self.rng.random() * (high - low))

    def took(self, median_ms: float) -> int:
        return int(median_ms * 1000 * self.rng.lognormvariate(0, 0.45)) + 500

    def call(self, hop: Hop, parent: Ctx | None) -> Ctx | None:
        """Emit the caller's client span, the server's span and the gateway's line; return the
        server's context (None when the server never handled the request)."""
        trace = parent[0] if parent else self.ids.trace_id()
        parent_span = parent[1] if parent else None
        if hop.caller_attrs is not None:
            client = self.ids.span_id()
            self.emit.span(
                hop.caller, (trace, client, parent_span), hop, CLIENT, hop.start, hop.start + hop.took + 2000
            )
            parent_span = client
        if not hop.propagate:
            trace, parent_span = self.ids.trace_id(), None
        server = (trace, self.ids.span_id()) if hop.reached else None
        if server:
            self.emit.span(
                hop.system, (*server, parent_span), hop, SERVER, hop.start + 1000, hop.start + 1000 + hop.took
            )
        self.emit.access(hop, (trace, parent_span) if hop.propagate and parent_span else None)
        return server

    def hop(self, caller: str, system: str, route: str, path: str, start: int, attrs: Attrs, **kw: Any) -> Hop:
        method, _, route = route.partition(" ")
        kw.setdefault("status", 201 if method == "POST" else 200)
        return Hop(
            caller,
            system,
            method,
            route,
            path,
            start=start,
            took=self.took(kw.pop("ms", 60)),
            attrs=attrs,
            size=self.between(180, 1400),
            **kw,
        )

    # -- orders ----------------------------------------------------------------------------------
    def order(self, at: int) -> list[Record]:
        """Run one order from capture to invoice; return its ground truth (and any return's)."""
        order = self.new_order(at)
        ctx = self.capture(order, at)
        records = [order.record]
        accepted = self.post_to_erp(order, ctx, at + self.between(MINUTE, 12 * MINUTE))
        if accepted is None:
            self.carry(order, [])
            return records
        at, ctx = accepted
        at += self.between(MINUTE, 20 * MINUTE)
        shipments = self.allocate(order, ctx, at)
        planned, parts = order.record.planned, []
        for index, (shipment, delay) in enumerate(shipments):
            order.record.planned = {}  # what the end cut off of this shipment alone
            released = self.release(order, shipment, at + delay + self.between(MINUTE, 30 * MINUTE), index == 0)
            if released is not None:
                records.extend(self.fulfil(order, shipment, released, first=index == 0))
            parts.append((shipment, order.record.planned))
        order.record.planned = planned
        self.carry(order, parts)
        return records

    def carry(self, order: Order, parts: list[tuple[Shipment, dict[str, int]]]) -> None:
        """Note what a live network needs to finish an order the end cut off: its plan, the ids it
        already has, and when each step left falls, the order's own and each shipment's (a step
        whose fault stops the order falls when the fault does)."""
        record = order.record
        shipments = []
        for index, (shipment, planned) in enumerate(parts):
            at = _times(planned, STEPS[2:])
            if at:
                shipped = "shipped" not in at
                shipments.append(
                    {
                        "system": shipment.system,
                        "first": index == 0,
                        "lines": [{"sku": item.sku, "qty": qty} for item, qty in shipment.lines],
                        "shipment": shipment.id if shipped else None,
                        "tracking": shipment.tracking if shipped else None,
                        "at": at,
                    }
                )
        at = _times(record.planned, [stage for stage in STEPS[:2] if stage not in record.stages])
        if not at and not shipments:
            return
        record.carried = {
            "id": order.ref,
            "channel": order.channel,
            "customer": order.customer,
            "lines": [{"sku": item.sku, "qty": qty} for item, qty in order.lines],
            "fault": order.fault.name if order.fault else None,
            "erp_order": next(iter(record.keys.get("erp_order", [])), None),
            "at": at,
            "shipments": shipments,
        }

    def new_order(self, at: int) -> Order:
        rng = self.rng
        fault = self.profile.draw(rng)
        b2b = (fault is not None and fault.name == "blocked_customer") or rng.random() < 0.3
        channel = "marketplace-b2b" if b2b else "marketplace-amz"
        ref = self.ids.next("PO") if b2b else self.ids.amz_order()
        customer = self.customer(b2b, fault)
        count = rng.choices((1, 2, 3, 4, 5), weights=(60, 22, 9, 5, 4))[0]
        items = rng.sample(self.catalog.items, count)
        lines = [
            (item, rng.randrange(1, 40) if b2b else rng.choices((1, 2, 3), weights=(8, 2, 1))[0]) for item in items
        ]
        promised = (at // DAY + (4 if b2b else 2)) * DAY - SECOND
        record = Record("order", ref, self.end, extra={"channel": channel, "customer": customer})
        record.key(ORDER_KEY[channel], ref, at)
        record.extra.update(promised_ship_by=iso(promised), lines=[{"sku": i.sku, "qty": q} for i, q in lines])
        return Order(channel, ref, customer, lines, fault, promised, record)

    def customer(self, b2b: bool, fault: Fault | None) -> str:
        if fault is not None and fault.name == "blocked_customer":
            return self.rng.choice(self.catalog.blocked_customers)
        return self.rng.choice(self.catalog.customers) if b2b else "AMZ-RETAIL"

    def capture(self, order: Order, at: int) -> Ctx | None:
        attrs = {
            **order.ref_attrs,
            "order.promised_ship_by": iso(order.promised),
            "order.line_count": len(order.lines),
            "order.total": order.total,
            "item.sku": order.lines[0][0].sku,
        }
        if order.channel == "marketplace-b2b":
            attrs["b2b.buyer_id"] = order.customer
        route = CAPTURE_ROUTE[order.channel]
        order.record.stage("captured", at)
        return self.call(self.hop("", order.channel, f"POST {route}", route, at, attrs, ms=90), None)

    def post_to_erp(self, order: Order, ctx: Ctx | None, at: int) -> tuple[int, Ctx] | None:
        """The channel's connector posts the order; the ERP accepts it or rejects bad master data."""
        attrs: Attrs = {"erp.external_ref": order.ref, "erp.customer": order.customer}
        rejection = self.rejection(order)
        if rejection:
            sku_or_customer, message = rejection
            attrs.update(sku_or_customer)
            lines = [{"sku": item.sku, "qty": qty} for item, qty in order.lines]
            lines[0]["sku"] = str(sku_or_customer.get("item.sku", lines[0]["sku"]))
            sent = {"external_ref": order.ref, "customer": order.customer, "lines": lines}
            hop = self.hop(
                order.channel,
                "erp",
                "POST /sales-orders",
                "/sales-orders",
                at,
                attrs,
                caller_attrs={**order.ref_attrs, **request_body(sent)},
                status=422,
                error=message,
            )
            server = self.call(hop, ctx)
            self.emit.log(
                "erp", at + hop.took, "ERROR", f"Sales order for {order.ref} rejected: {message}", attrs, server
            )
            order.record.fault(order.fault, at, "erp", "accepted_by_erp", message)  # type: ignore[arg-type]
            return None
        order.erp_order = self.ids.next("SO")
        order.record.key("erp_order", order.erp_order, at)
        attrs.update({"erp.sales_order": order.erp_order, "item.sku": order.lines[0][0].sku})
        hop = self.hop(
            order.channel, "erp", "POST /sales-orders", "/sales-orders", at, attrs, caller_attrs=order.ref_attrs, ms=140
        )
        order.record.stage("accepted_by_erp", at)
        return at, self.call(hop, ctx)  # type: ignore[return-value]

    def rejection(self, order: Order) -> tuple[Attrs, str] | None:
        name = order.fault.name if order.fault else ""
        if name == "unknown_sku":
            sku = self.catalog.unknown_sku(self.rng)
            return {"item.sku": sku}, f"SKU {sku} is not in the item master"
        if name == "blocked_customer":
            return {"erp.customer": order.customer}, f"customer {order.customer} is on credit hold"
        return None

    def allocate(self, order: Order, ctx: Ctx, at: int) -> list[tuple[Shipment, int]]:
        """Allocate stock per warehouse by the routing rules; a short line ships later (backorder)."""
        rule, groups = self.route(order)
        whole = order.fault is not None and order.fault.name in ONE_SHIPMENT
        backorder = not whole and len(order.lines) > 1 and self.rng.random() < BACKORDER_SHARE
        if backorder:
            warehouse, lines = groups[-1]
            late = lines.pop()
            groups = [g for g in groups if g[1]] + [(warehouse, [late])]
        allocation = "backorder" if backorder else "split" if len(groups) > 1 else "full"
        attrs: Attrs = {
            "erp.sales_order": order.erp_order,
            "erp.allocation": allocation,
            "erp.routing_rule": rule,
            "warehouse.id": groups[0][0],
        }
        if backorder:
            skus = tuple(item.sku for item, _ in groups[-1][1])
            expected = iso(at + BACKORDER_LEAD)
            attrs.update({"erp.backorder.skus": skus, "erp.backorder.expected_by": expected})
            order.record.extra["backorder"] = {"skus": list(skus), "expected_by": expected}
        path = f"/sales-orders/{order.erp_order}/allocate"
        server = self.call(
            self.hop("", "erp", "POST /sales-orders/{erp_order}/allocate", path, at, attrs, status=200, ms=80), ctx
        )
        order.record.stage("allocated", at)
        order.record.extra["allocation"] = allocation
        delays = [0] * len(groups)
        if backorder:
            delays[-1] = self.between(DAY, 3 * DAY)
        return [
            (Shipment(WAREHOUSES[wh], wh, lines, server), delay)
            for (wh, lines), delay in zip(groups, delays, strict=True)
        ]

    def route(self, order: Order) -> tuple[str, list[tuple[str, list[tuple[Item, int]]]]]:
        units = sum(qty for _, qty in order.lines)
        if order.fault is not None and order.fault.name in ROUTED_TO_3PL:
            return "partner-sla", [(self.rng.choice(("RNO1", "ATL2")), list(order.lines))]
        if order.fault is not None and order.fault.name in ONE_SHIPMENT:
            return "single-shipment", [(order.lines[0][0].warehouse, list(order.lines))]
        if order.channel == "marketplace-b2b" and units >= BULK_UNITS:
            return "b2b-bulk-own-dc", [("DAL1", list(order.lines))]
        groups: dict[str, list[tuple[Item, int]]] = {}
        for item, qty in order.lines:
            groups.setdefault(item.warehouse, []).append((item, qty))
        return "stock-location", list(groups.items())

    def release(self, order: Order, shipment: Shipment, at: int, first: bool) -> int | None:
        """Send a pick order to the WMS (context propagates) or a fulfilment order to a 3PL (its
        batch intake starts a new trace). Return when the warehouse has it, None if it never did."""
        if shipment.system == "wms":
            pick = self.ids.next("PK")
            attrs = {"wms.order_ref": order.erp_order, "wms.pick_id": pick, "warehouse.id": shipment.warehouse}
            hop = self.hop(
                "erp",
                "wms",
                "POST /pick-orders",
                "/pick-orders",
                at,
                attrs,
                caller_attrs={"erp.sales_order": order.erp_order},
            )
            shipment.ctx = self.call(hop, shipment.ctx)
            order.record.stage("released", at)
            return at
        name = order.fault.name if order.fault and first else ""
        if name in ("partner_down", "partner_timeout"):
            self.partner_failure(order, shipment, at, order.fault)  # type: ignore[arg-type]
            return None
        shipment.fulfillment = self.ids.fulfillment(shipment.system)
        order.record.key("fulfillment_order", shipment.fulfillment, at)
        attrs = {
            "tpl.client_order": order.erp_order,
            "tpl.fulfillment_id": shipment.fulfillment,
            "warehouse.id": shipment.warehouse,
        }
        hop = self.hop(
            "erp",
            shipment.system,
            "POST /fulfillment-orders",
            "/fulfillment-orders",
            at,
            attrs,
            caller_attrs={"erp.sales_order": order.erp_order},
            status=202,
            propagate=False,
            ms=220,
        )
        shipment.ctx = self.call(hop, shipment.ctx)
        order.record.stage("released", at)
        return at

    def partner_failure(self, order: Order, shipment: Shipment, at: int, fault: Fault) -> None:
        """A 3PL down answers 503 at its gateway until the ERP gives up; a timeout fails once."""
        attempts = (0, 2 * MINUTE, 10 * MINUTE, 30 * MINUTE) if fault.name == "partner_down" else (0,)
        status, took = (503, 15_000) if fault.name == "partner_down" else (504, 30 * SECOND)
        message = "upstream unavailable" if status == 503 else "upstream timed out after 30 s"
        caller = {"erp.sales_order": order.erp_order, **request_body({"tpl.client_order": order.erp_order})}
        for offset in attempts:
            hop = Hop(
                "erp",
                shipment.system,
                "POST",
                "/fulfillment-orders",
                "/fulfillment-orders",
                status,
                at + offset,
                took,
                {},
                caller,
                message,
                reached=False,
                propagate=False,
                size=120,
            )
            self.call(hop, shipment.ctx)
        given_up = at + attempts[-1] + took
        tries = f"{len(attempts)} attempt(s)"
        body = f"Release of {order.erp_order} to {shipment.system} failed after {tries}: {status} {message}"
        self.emit.log(
            "erp",
            given_up,
            "ERROR",
            body,
            {"erp.sales_order": order.erp_order, "error.type": str(status)},
            shipment.ctx,
        )
        order.record.fault(fault, at, shipment.system, "released", f"{status} {message}")

    def fulfil(self, order: Order, shipment: Shipment, released: int, first: bool) -> list[Record]:
        """Ship, tell the ERP, confirm to the marketplace, invoice; maybe a return follows."""
        fault = order.fault.name if order.fault and first else ""
        shipped = released + self.between(2 * HOUR, 18 * HOUR if shipment.system == "wms" else 26 * HOUR)
        if first and shipped > order.promised - HOUR:
            # A healthy warehouse ships by the promise it was given; lateness is a fault of its own.
            shipped = max(released + HOUR, order.promised - self.between(HOUR, 3 * HOUR))
        self.ship(order, shipment, shipped, fault)
        if fault == "dead_letter":
            self.dead_letter(order, shipment, shipped)
            return []
        self.confirm(order, shipment, shipped, fault)
        self.invoice(order, shipment, shipped + self.between(30 * MINUTE, 8 * HOUR))
        if first and self.rng.random() < RETURN_SHARE:
            return self.returned(order, shipment, shipped + self.between(DAY, 4 * DAY))
        return []

    def ship(self, order: Order, shipment: Shipment, at: int, fault: str) -> None:
        rng = self.rng
        shipment.id = self.ids.next("SH")
        shipment.carrier = rng.choice(CARRIER_MIX[shipment.system])
        shipment.tracking = self.ids.tracking(shipment.carrier)
        for key, value in (("shipment", shipment.id), ("tracking", shipment.tracking)):
            order.record.key(key, value, at)
        data: dict[str, object] = {
            "order_id": order.ref,
            "sales_order": order.erp_order,
            "shipment_id": shipment.id,
            "tracking_number": shipment.tracking,
            "carrier": shipment.carrier,
            "warehouse": shipment.warehouse,
            "lines": [{"sku": item.sku, "qty": qty} for item, qty in shipment.lines],
        }
        if shipment.fulfillment:
            data["fulfillment_id"] = shipment.fulfillment
        event_id = self.ids.event_id()
        self.emit.event(shipment.system, SHIPPED, at, data, shipment.ctx, event_id)
        order.record.stage("shipped", at)
        order.record.shipped(shipment.id, data["lines"], at)  # type: ignore[arg-type]
        if fault == "duplicate_notice":
            self.duplicate(order, shipment, at, data, event_id)

    def duplicate(self, order: Order, shipment: Shipment, at: int, data: dict[str, object], event_id: str) -> None:
        """Either the same event is delivered again, or the 3PL sends a second notice (new id)."""
        redelivered = self.rng.random() < 0.5
        again = at + self.between(MINUTE, 2 * HOUR)
        if redelivered:
            self.emit.event(shipment.system, SHIPPED, at, data, shipment.ctx, event_id)
        else:
            self.emit.event(shipment.system, SHIPPED, again, data, shipment.ctx, self.ids.event_id())
        detail = f"event {event_id} delivered twice" if redelivered else f"second notice for shipment {shipment.id}"
        order.record.fault(order.fault, again if not redelivered else at, shipment.system, "shipped", detail)  # type: ignore[arg-type]

    def dead_letter(self, order: Order, shipment: Shipment, shipped: int) -> None:
        at = shipped + self.between(20 * MINUTE, 40 * MINUTE)
        reason = "consumer rejected the message 5 times: schema validation failed (carrier_service missing)"
        data: dict[str, object] = {
            "original_type": SHIPPED,
            "original_source": shipment.system,
            "sales_order": order.erp_order,
            "shipment_id": shipment.id,
            "tracking_number": shipment.tracking,
            "attempts": 5,
            "reason": reason,
        }
        self.emit.event("erp", DEAD_LETTERED, at, data, None, self.ids.event_id())
        attrs = {"erp.sales_order": order.erp_order, "shipment.id": shipment.id}
        self.emit.log("erp", at, "ERROR", f"Shipment notice for {shipment.id} dead-lettered: {reason}", attrs, None)
        order.record.fault(order.fault, at, "erp", "confirmed", reason)  # type: ignore[arg-type]

    def confirm(self, order: Order, shipment: Shipment, shipped: int, fault: str) -> None:
        """The ERP confirms the shipment to the marketplace; the event that woke it carried no
        usable context, so this starts a new trace."""
        late = fault == "late_confirmation"
        at = shipped + (self.between(3 * HOUR, 30 * HOUR) if late else self.between(5 * MINUTE, 60 * MINUTE))
        path = f"/orders/{order.ref}/shipment-confirmation"
        attrs = {
            **order.ref_attrs,
            "shipment.id": shipment.id,
            "shipment.tracking_number": shipment.tracking,
            "shipment.carrier": shipment.carrier,
        }
        caller = {"erp.sales_order": order.erp_order, "shipment.id": shipment.id}
        route = "POST /orders/{marketplace_order}/shipment-confirmation"
        if fault == "throttled":
            at = self.throttle(order, path, at, attrs, caller, route)
        self.call(self.hop("erp", order.channel, route, path, at, attrs, caller_attrs=caller, status=200), None)
        order.record.stage("confirmed", at)
        if late:
            order.record.fault(
                order.fault,
                shipped + 2 * HOUR,
                order.channel,
                "confirmed",
                f"confirmation sent {(at - shipped) // MINUTE} min after shipping",
            )  # type: ignore[arg-type]

    def throttle(self, order: Order, path: str, at: int, attrs: Attrs, caller: Attrs, route: str) -> int:
        """One or two 429s with Retry-After; the ERP waits as told, so the confirmation goes through."""
        for attempt in range(self.rng.choice((1, 2))):
            wait = self.rng.choice((30, 60, 120))
            if attempt == 0:
                order.record.fault(order.fault, at, order.channel, "confirmed", f"429 Retry-After {wait}")  # type: ignore[arg-type]
            hop = self.hop(
                "erp",
                order.channel,
                route,
                path,
                at,
                attrs,
                caller_attrs=caller,
                status=429,
                error="Too Many Requests",
                retry_after=wait,
                ms=8,
            )
            self.call(hop, None)
            self.emit.log(
                "erp",
                at,
                "WARN",
                f"{order.channel} throttled shipment confirmation; retrying in {wait} s",
                {**caller, "http.response.status_code": 429},
                None,
            )
            at += wait * SECOND + self.between(0, 5 * SECOND)
        return at

    def invoice(self, order: Order, shipment: Shipment, at: int) -> None:
        invoice = self.ids.next("INV")
        order.record.key("invoice", invoice, at)
        value = sum(item.price_cents * qty for item, qty in shipment.lines) / 100
        attrs = {
            "erp.sales_order": order.erp_order,
            "erp.invoice": invoice,
            "shipment.id": shipment.id,
            "invoice.amount": value,
        }
        self.call(self.hop("", "erp", "POST /invoices", "/invoices", at, attrs, ms=110), None)
        order.record.stage("invoiced", at)

    # -- returns ---------------------------------------------------------------------------------
    def returned(self, order: Order, shipment: Shipment, at: int) -> list[Record]:
        if at >= self.end:
            return []
        rma = self.ids.next("RMA")
        record = Record("return", rma, self.end, extra={"channel": order.channel, "order": order.ref})
        for key, value in (("rma", rma), (ORDER_KEY[order.channel], order.ref), ("erp_order", order.erp_order)):
            record.key(key, value, at)
        item, qty = shipment.lines[0]
        attrs = {**order.ref_attrs, "rma.id": rma, "item.sku": item.sku}
        ctx = self.call(self.hop("", order.channel, "POST /returns", "/returns", at, attrs), None)
        record.stage("requested", at)
        at += self.between(10 * MINUTE, 3 * HOUR)
        erp_attrs = {"erp.sales_order": order.erp_order, "erp.external_ref": order.ref, "rma.id": rma}
        self.call(self.hop(order.channel, "erp", "POST /returns", "/returns", at, erp_attrs, caller_attrs=attrs), ctx)
        record.stage("authorised", at)
        self.receive_return(order, shipment, record, at + self.between(DAY, 3 * DAY), (item, qty))
        return [record]

    def receive_return(self, order: Order, shipment: Shipment, record: Record, at: int, line: tuple[Item, int]) -> None:
        data: dict[str, object] = {
            "rma_id": record.id,
            "order_id": order.ref,
            "sales_order": order.erp_order,
            "shipment_id": shipment.id,
            "lines": [{"sku": line[0].sku, "qty": line[1]}],
        }
        self.emit.event(shipment.system, RETURN_RECEIVED, at, data, None, self.ids.event_id())
        record.stage("received", at)
        at += self.between(2 * HOUR, 30 * HOUR)
        note = self.ids.next("CN")
        attrs = {"erp.sales_order": order.erp_order, "rma.id": record.id, "erp.credit_note": note}
        self.call(self.hop("", "erp", "POST /credit-notes", "/credit-notes", at, attrs), None)
        record.stage("refunded", at)

    # -- inventory -------------------------------------------------------------------------------
    def inventory_sync(self, at: int) -> Record:
        """A WMS adjustment (cycle count, damage, receipt) flows to the ERP and the listings."""
        rng = self.rng
        adjustment = self.ids.next("ADJ")
        item = rng.choice(self.catalog.items)
        record = Record("inventory_sync", adjustment, self.end, extra={"sku": item.sku})
        record.key("adjustment", adjustment, at)
        delta = rng.choice((-3, -2, -1, 1, 2, 5, 12, 24, 48))
        attrs = {
            "inventory.adjustment_id": adjustment,
            "item.sku": item.sku,
            "warehouse.id": "DAL1",
            "inventory.delta": delta,
        }
        ctx = self.call(self.hop("", "wms", "POST /inventory-adjustments", "/inventory-adjustments", at, attrs), None)
        record.stage("adjusted", at)
        at += self.between(MINUTE, 10 * MINUTE)
        erp_attrs = {"inventory.adjustment_id": adjustment, "item.sku": item.sku, "erp.on_hand": rng.randrange(0, 400)}
        ctx = self.call(self.hop("wms", "erp", "POST /inventory", "/inventory", at, erp_attrs, caller_attrs=attrs), ctx)
        record.stage("erp_updated", at)
        self.update_listings(record, item, ctx, at + self.between(2 * MINUTE, 20 * MINUTE))
        return record

    def update_listings(self, record: Record, item: Item, ctx: Ctx | None, at: int) -> None:
        throttled = self.profile.draw(self.rng)
        path = f"/listings/{item.sku}/quantity"
        attrs = {
            "item.sku": item.sku,
            "inventory.adjustment_id": record.id,
            "listing.quantity": self.rng.randrange(0, 400),
        }
        caller = {"inventory.adjustment_id": record.id, "item.sku": item.sku}
        for channel in ("marketplace-amz", "marketplace-b2b"):
            if throttled is not None and throttled.name == "throttled" and channel == "marketplace-amz":
                hop = self.hop(
                    "erp",
                    channel,
                    "PUT /listings/{sku}/quantity",
                    path,
                    at,
                    attrs,
                    caller_attrs=caller,
                    status=429,
                    error="Too Many Requests",
                    retry_after=60,
                    ms=8,
                )
                self.call(hop, ctx)
                record.fault(throttled, at, channel, "listings_updated", "429 Retry-After 60")
                at += 60 * SECOND
            self.call(
                self.hop(
                    "erp", channel, "PUT /listings/{sku}/quantity", path, at, attrs, caller_attrs=caller, status=200
                ),
                ctx,
            )
            record.stage("listings_updated", at)
            at += self.between(SECOND, 30 * SECOND)
