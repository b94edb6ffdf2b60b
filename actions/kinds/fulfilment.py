"""Warehouses and 3PLs: find, cancel, confirm and create fulfilments by the ERP's sales order.

Paths and the field that carries the sales order differ by kind; a new warehouse API is a new
entry in ``APIS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actions.client import PartnerClient

CANCELLED = "cancelled"


@dataclass(frozen=True)
class FulfilmentApi:
    collection: str
    order_field: str
    query: str


APIS = {
    "3pl": FulfilmentApi("/fulfillment-orders", "tpl.client_order", "client_order"),
    "wms": FulfilmentApi("/pick-orders", "wms.order_ref", "order_ref"),
}


def api_of(client: PartnerClient) -> FulfilmentApi | None:
    return APIS.get(client.partner.kind)


def live(client: PartnerClient, sales_order: str) -> list[dict[str, Any]]:
    """Fulfilments of the order at this partner that are not cancelled."""
    api = _api(client)
    found = client.send("GET", f"{api.collection}?{api.query}={sales_order}").body.get("items", [])
    return [doc for doc in found if doc.get("status") != CANCELLED]


def cancel_confirmed(client: PartnerClient, doc_id: str, key: str) -> bool:
    """Cancel, then read it back: only a cancel the partner shows counts."""
    api = _api(client)
    client.send("POST", f"{api.collection}/{doc_id}/cancel", body={}, idempotency_key=key)
    return client.send("GET", f"{api.collection}/{doc_id}").body.get("status") == CANCELLED


def create(client: PartnerClient, sales_order: str, body: dict[str, Any] | None, key: str) -> dict[str, Any]:
    api = _api(client)
    payload = {k: v for k, v in (body or {}).items() if k not in _order_fields()} | {api.order_field: sales_order}
    return client.send("POST", api.collection, body=payload, idempotency_key=key).body


def _api(client: PartnerClient) -> FulfilmentApi:
    api = api_of(client)
    if api is None:
        raise ValueError(f"{client.name} is a {client.partner.kind}, not a warehouse or 3PL")
    return api


def _order_fields() -> set[str]:
    return {api.order_field for api in APIS.values()}
