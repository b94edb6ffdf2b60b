"""The ERP: sales orders by external reference, and its dead-letter list."""

from __future__ import annotations

from typing import Any

from actions.client import PartnerClient

# Event fields that name the order a dead letter belongs to, and the key types they carry.
LETTER_FIELDS = {
    "sales_order": "erp_order",
    "shipment_id": "shipment",
    "tracking_number": "tracking",
    "order_id": "marketplace_order",
}


def orders_for(client: PartnerClient, external_ref: str) -> list[dict[str, Any]]:
    return list(client.send("GET", f"/sales-orders?external_ref={external_ref}").body.get("sales_orders", []))


def dead_letter_for(client: PartnerClient, keys: dict[str, list[str]]) -> dict[str, Any] | None:
    """The dead letter whose event names one of this transaction's keys."""
    for letter in client.send("GET", "/dead-letters").body.get("dead_letters", []):
        data = (letter.get("event") or {}).get("data") or {}
        if any(data.get(field) in keys.get(key_type, []) for field, key_type in LETTER_FIELDS.items()):
            return dict(letter)
    return None


def redeliver(client: PartnerClient, letter_id: str, key: str) -> dict[str, Any]:
    return client.send("POST", f"/dead-letters/{letter_id}/redeliver", body={}, idempotency_key=key).body
