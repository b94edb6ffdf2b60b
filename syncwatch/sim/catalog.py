"""Master data of the simulated business: items, B2B customers, warehouses and who runs them."""

from __future__ import annotations

import random
from dataclasses import dataclass

WAREHOUSES = {"DAL1": "wms", "RNO1": "3pl-fastship", "ATL2": "3pl-parcelpro"}
"""Warehouse → the system that picks and ships from it (our own WMS, or a 3PL)."""

CARRIER_MIX = {"wms": ("UPS", "FedEx"), "3pl-fastship": ("UPS", "USPS"), "3pl-parcelpro": ("FedEx", "USPS")}
FAMILIES = ("CHR", "DSK", "LMP", "RUG", "SHF", "TBL", "CAB", "BED")
BULK_UNITS = 20
"""Routing rule: B2B orders of at least this many units ship from our own warehouse (pallets)."""


@dataclass(frozen=True)
class Item:
    sku: str
    price_cents: int
    warehouse: str


@dataclass(frozen=True)
class Catalog:
    items: tuple[Item, ...]
    customers: tuple[str, ...]
    blocked_customers: tuple[str, ...]

    @classmethod
    def build(cls, rng: random.Random, size: int = 320) -> Catalog:
        skus = sorted({f"{rng.choice(FAMILIES)}-{rng.randrange(1000, 9000):04d}" for _ in range(size)})
        homes = rng.choices(list(WAREHOUSES), weights=(5, 3, 2), k=len(skus))
        items = tuple(Item(sku, rng.randrange(1_500, 60_000), home) for sku, home in zip(skus, homes, strict=True))
        customers = tuple(f"C-{n}" for n in rng.sample(range(1000, 2000), 80))
        return cls(items, customers[:76], customers[76:])

    def unknown_sku(self, rng: random.Random) -> str:
        """A SKU a marketplace lists but the ERP's item master does not know yet (9xxx is unused)."""
        return f"{rng.choice(FAMILIES)}-{rng.randrange(9000, 10000):04d}"
