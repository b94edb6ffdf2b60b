"""Fault profiles: which partner failures are injected into how many orders.

A rate is the share of orders that receive the fault. Each order draws at most one fault from a
single uniform draw, so the observed share of every fault converges on its rate and faults never
mask each other. Categories are the names syncwatch's exceptions use.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class FaultSpecError(ValueError):
    """A --profile or --fault value that does not name a known profile, fault or rate."""


@dataclass(frozen=True)
class Fault:
    name: str
    category: str
    needs_person: bool
    what: str


FAULTS = {
    f.name: f
    for f in (
        Fault("unknown_sku", "validation", True, "ERP rejects the order: a SKU is not in its item master (422)"),
        Fault("blocked_customer", "validation", True, "ERP rejects the order: the customer is on credit hold (422)"),
        Fault("partner_down", "partner_unavailable", True, "the 3PL answers 503 until the ERP gives up"),
        Fault("partner_timeout", "timeout", True, "the release to the 3PL times out at the gateway (504)"),
        Fault("throttled", "throttled", False, "the marketplace answers 429 with Retry-After; the retry succeeds"),
        Fault("duplicate_notice", "duplicate_notice", False, "the shipper sends the shipment notice twice"),
        Fault("late_confirmation", "stuck", True, "the shipment confirmation reaches the marketplace hours late"),
        Fault("dead_letter", "dead_lettered", True, "the shipment notice is dead-lettered on its way to the ERP"),
    )
}

PROFILES: dict[str, dict[str, float]] = {
    "none": {},
    # 3.7 % of orders need a person (the needs_person faults), 3.5 % more are informational.
    "default": {
        "unknown_sku": 0.008,
        "blocked_customer": 0.004,
        "partner_down": 0.008,
        "partner_timeout": 0.004,
        "throttled": 0.02,
        "duplicate_notice": 0.015,
        "late_confirmation": 0.008,
        "dead_letter": 0.005,
    },
    "chaos": {
        "unknown_sku": 0.04,
        "blocked_customer": 0.02,
        "partner_down": 0.05,
        "partner_timeout": 0.02,
        "throttled": 0.06,
        "duplicate_notice": 0.04,
        "late_confirmation": 0.04,
        "dead_letter": 0.03,
    },
}


@dataclass(frozen=True)
class FaultProfile:
    """Rates by fault name; ``draw`` picks at most one fault for an order."""

    rates: Mapping[str, float]

    def draw(self, rng: random.Random) -> Fault | None:
        u = rng.random()
        for name, rate in self.rates.items():
            if u < rate:
                return FAULTS[name]
            u -= rate
        return None

    def rate(self, name: str) -> float:
        return self.rates.get(name, 0.0)


def build_profile(names: Iterable[str] = ("default",), overrides: Iterable[str] = ()) -> FaultProfile:
    """Combine profiles (later ones win per fault), then apply NAME=RATE overrides."""
    rates: dict[str, float] = {}
    for name in names:
        if name not in PROFILES:
            raise FaultSpecError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}")
        rates.update(PROFILES[name])
    for spec in overrides:
        rates.update(_override(spec))
    if sum(rates.values()) > 1:
        raise FaultSpecError(f"fault rates add up to {sum(rates.values()):.3f}; at most 1 is possible")
    return FaultProfile({name: rates[name] for name in FAULTS if rates.get(name)})


def _override(spec: str) -> dict[str, float]:
    """NAME is a fault, or a category whose faults share the rate equally."""
    name, _, value = spec.partition("=")
    try:
        rate = float(value)
    except ValueError:
        raise FaultSpecError(f"--fault {spec!r}: expected NAME=RATE with RATE between 0 and 1") from None
    if not 0 <= rate <= 1:
        raise FaultSpecError(f"--fault {spec!r}: the rate must be between 0 and 1")
    if name in FAULTS:
        return {name: rate}
    members = [f.name for f in FAULTS.values() if f.category == name]
    if not members:
        raise FaultSpecError(f"--fault {spec!r}: unknown fault; choose from {', '.join(FAULTS)}")
    return {member: rate / len(members) for member in members}
