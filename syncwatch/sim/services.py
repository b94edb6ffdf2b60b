"""The live network's HTTP services: one small Starlette app per system, state in memory.

Handlers put the business attributes of what they did in ``request.state.attrs``; the telemetry
middleware in ``live`` turns them into span attributes in each system's own names.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syncwatch.sim.catalog import Catalog

Handler = Callable[[Request], Any]


@dataclass
class ErpState:
    """Master data, sales orders, idempotency results and the dead-letter list of the ERP."""

    skus: set[str]
    blocked: set[str]
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    idempotent: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    dead_letters: dict[str, dict[str, Any]] = field(default_factory=dict)
    numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(100_001))


@dataclass
class PartnerState:
    """A marketplace, WMS or 3PL: its documents by id, and how it is failing.

    ``down`` fails intake (creates answer 503) while cancels and reads still work, as when a 3PL's
    order API is out; ``unreachable`` fails everything; ``slow`` takes a create but answers 504,
    as a gateway does when the partner's backend is too slow (the document exists all the same);
    ``throttle`` answers that many requests with 429 and ``Retry-After: retry_after_s``. ``outage``
    is one of those three modes staged from outside the process (``syncwatch sim outage``), kept
    apart from the flags an order's fault sets for its own call, so that call cannot end it.
    """

    mint: Callable[[], str]  # the id of a document created without one, in this partner's shape
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    down: bool = False
    unreachable: bool = False
    slow: bool = False
    throttle: int = 0
    retry_after_s: int = 1
    idempotent: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    on_create: Callable[[dict[str, Any]], Awaitable[None]] | None = None
    outage: str = ""

    def failing(self, mode: str) -> bool:
        """Whether the partner is ``down``, ``unreachable`` or ``slow``, by a fault's flag or an outage."""
        return bool(getattr(self, mode)) or self.outage == mode


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def erp_app(state: ErpState, redeliver: Callable[[dict[str, Any]], Any]) -> Starlette:
    async def create(request: Request) -> Response:
        key = request.headers.get("idempotency-key")
        if key and key in state.idempotent:
            status, body = state.idempotent[key]
            request.state.attrs = {"erp.sales_order": body.get("sales_order", ""), "erp.idempotent_replay": True}
            return _json(status, body)
        status, body = _sales_order(state, await request.json(), request)
        if key:
            state.idempotent[key] = (status, body)
        return _json(status, body)

    async def list_orders(request: Request) -> Response:
        ref = request.query_params.get("external_ref")
        found = [o for o in state.orders.values() if ref is None or o["external_ref"] == ref]
        return _json(200, {"sales_orders": found, "count": len(found)})

    async def get_order(request: Request) -> Response:
        order = state.orders.get(request.path_params["erp_order"])
        return _json(200, order) if order else _json(404, {"error": "no such sales order"})

    async def allocate(request: Request) -> Response:
        order = state.orders.get(request.path_params["erp_order"])
        if order is None:
            return _json(404, {"error": "no such sales order"})
        order["status"] = "allocated"
        request.state.attrs = {"erp.sales_order": order["sales_order"], "erp.allocation": "full"}
        return _json(200, order)

    async def add_sku(request: Request) -> Response:
        sku = (await request.json())["sku"]
        state.skus.add(sku)
        request.state.attrs = {"item.sku": sku}
        return _json(201, {"sku": sku})

    async def document(request: Request) -> Response:
        body = await request.json()
        request.state.attrs = {k: v for k, v in body.items() if isinstance(v, str | int) and "." in k}
        return _json(201, body)

    async def dead_letters(_request: Request) -> Response:
        return _json(200, {"dead_letters": list(state.dead_letters.values())})

    async def redeliver_one(request: Request) -> Response:
        letter = state.dead_letters.get(request.path_params["letter"])
        if letter is None:
            return _json(404, {"error": "no such dead letter"})
        if not await redeliver(letter["event"]):
            return _json(502, {"error": "re-delivery failed; the message stays in the dead-letter list"})
        state.dead_letters.pop(letter["id"], None)
        return _json(200, {"redelivered": letter["id"]})

    return Starlette(
        routes=[
            Route("/sales-orders", create, methods=["POST"]),
            Route("/sales-orders", list_orders, methods=["GET"]),
            Route("/sales-orders/{erp_order}", get_order, methods=["GET"]),
            Route("/sales-orders/{erp_order}/allocate", allocate, methods=["POST"]),
            Route("/master-data/skus", add_sku, methods=["POST"]),
            *(Route(p, document, methods=["POST"]) for p in ("/invoices", "/inventory", "/returns", "/credit-notes")),
            Route("/dead-letters", dead_letters, methods=["GET"]),
            Route("/dead-letters/{letter}/redeliver", redeliver_one, methods=["POST"]),
        ]
    )


def _sales_order(state: ErpState, body: dict[str, Any], request: Request) -> tuple[int, dict[str, Any]]:
    """Validate against master data as a real ERP does: unknown SKUs and blocked customers fail."""
    request.state.attrs = {"erp.external_ref": body["external_ref"], "erp.customer": body["customer"]}
    unknown = [line["sku"] for line in body["lines"] if line["sku"] not in state.skus]
    if unknown:
        request.state.error = f"SKU {unknown[0]} is not in the item master"
        return 422, {"error": request.state.error, "sku": unknown[0]}
    if body["customer"] in state.blocked:
        request.state.error = f"customer {body['customer']} is on credit hold"
        return 422, {"error": request.state.error, "customer": body["customer"]}
    number = f"SO-{next(state.numbers)}"
    order = {"sales_order": number, "status": "open", **body}
    state.orders[number] = order
    request.state.attrs["erp.sales_order"] = number
    return 201, order


def partner_app(system: str, state: PartnerState, ref_attr: str) -> Starlette:
    """The shared shape of marketplaces, WMS and 3PLs: create (honouring Idempotency-Key), list by a
    field, get and cancel documents."""

    async def create(request: Request) -> Response:
        refused = _refusal(state, request, intake=True)
        if refused is not None:
            return refused
        key = request.headers.get("idempotency-key")
        if key and key in state.idempotent:
            return _json(*state.idempotent[key])
        body = await request.json()
        ident = body.get("id") or state.mint()
        state.documents[ident] = {**body, "id": ident, "status": "open"}
        request.state.attrs = {ref_attr: ident, **{k: v for k, v in body.items() if "." in k}}
        if key:
            state.idempotent[key] = (201, state.documents[ident])
        if state.on_create is not None:
            await state.on_create(state.documents[ident])
        if state.failing("slow"):
            request.state.error = "upstream timed out"
            return _json(504, {"error": "gateway timeout: the partner took too long to answer"})
        return _json(201, state.documents[ident])

    async def listing_of(request: Request) -> Response:
        """Documents whose fields end with each query parameter's name and equal its value."""
        wanted = dict(request.query_params)
        found = [d for d in state.documents.values() if all(_field_is(d, k, v) for k, v in wanted.items())]
        return _json(200, {"items": found, "count": len(found)})

    async def get(request: Request) -> Response:
        if state.failing("unreachable"):
            return _json(503, {"error": "service unavailable"})
        found = state.documents.get(next(iter(request.path_params.values())))
        return _json(200, found) if found else _json(404, {"error": "not found"})

    async def act(request: Request) -> Response:
        refused = _refusal(state, request, intake=False)
        if refused is not None:
            return refused
        found = state.documents.get(next(iter(request.path_params.values())))
        if found is None:
            return _json(404, {"error": "not found"})
        verb = request.url.path.rsplit("/", 1)[-1]
        found["status"] = "cancelled" if verb == "cancel" else verb
        request.state.attrs = {ref_attr: found["id"], **{k: v for k, v in (await request.json()).items() if "." in k}}
        return _json(200, found)

    async def listing(request: Request) -> Response:
        body = await request.json()
        request.state.attrs = {"item.sku": request.path_params["sku"], **{k: v for k, v in body.items() if "." in k}}
        return _json(200, {"sku": request.path_params["sku"], **body})

    # Path parameters carry the key type names of defaults.toml, so span names are its templates.
    collection = {"wms": "/pick-orders/{pick_order}", "3pl-fastship": "/fulfillment-orders/{fulfillment_order}"}
    collection["3pl-parcelpro"] = collection["3pl-fastship"]
    one = collection.get(system, "/orders/{marketplace_order}")
    verb = "shipment-confirmation" if system.startswith("marketplace-") else "cancel"
    routes = [
        Route(one.rsplit("/", 1)[0], create, methods=["POST"]),
        Route(one.rsplit("/", 1)[0], listing_of, methods=["GET"]),
        Route(one, get, methods=["GET"]),
    ]
    routes.append(Route(f"{one}/{verb}", act, methods=["POST"]))
    extra = {
        "marketplace-b2b": ["/purchase-orders", "/returns"],
        "marketplace-amz": ["/returns"],
        "wms": ["/inventory-adjustments"],
    }
    routes += [Route(path, create, methods=["POST"]) for path in extra.get(system, [])]
    if system.startswith("marketplace-"):
        routes.append(Route("/listings/{sku}/quantity", listing, methods=["PUT"]))
    return Starlette(routes=routes)


def _refusal(state: PartnerState, request: Request, *, intake: bool) -> Response | None:
    """How a failing partner answers: 503 when down (intake) or unreachable, 429 while throttling."""
    if state.failing("unreachable") or (intake and state.failing("down")):
        request.state.error = "service unavailable"
        return _json(503, {"error": "service unavailable"})
    if state.throttle > 0:
        state.throttle -= 1
        request.state.error = "too many requests"
        return _json(429, {"error": "too many requests"}, {"Retry-After": str(state.retry_after_s)})
    return None


def _field_is(document: dict[str, Any], name: str, value: str) -> bool:
    return any(k == name or k.endswith(f".{name}") for k, v in document.items() if str(v) == value)


def initial_erp(catalog: Catalog, first_order: int = 100_001) -> ErpState:
    skus = {item.sku for item in catalog.items}
    return ErpState(skus, set(catalog.blocked_customers), numbers=itertools.count(first_order))
