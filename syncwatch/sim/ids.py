"""Identifiers shaped like each system's own, drawn from one seeded generator so runs repeat."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Iterable

CARRIERS = ("UPS", "FedEx", "USPS")
NUMBERED = re.compile(r"\b([A-Z]+)-(\d+)\b")


class Ids:
    """Per-system sequences (ERPs and 3PLs number documents in order) and random ids."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.sequences = {
            "SO": 100_000 + rng.randrange(10_000),
            "PO": 450_000 + rng.randrange(10_000),
            "INV": 700_000 + rng.randrange(10_000),
            "SH": 5_000_000 + rng.randrange(100_000),
            "RMA": 20_000 + rng.randrange(1_000),
            "ADJ": 90_000 + rng.randrange(1_000),
            "CN": 30_000 + rng.randrange(1_000),
            "PK": 600_000 + rng.randrange(10_000),
        }

    def continue_after(self, lines: Iterable[str]) -> None:
        """Number after every ``PREFIX-n`` in ``lines`` (a generated history's ground truth): a live
        network going on from that history must never issue one of its ids again."""
        for line in lines:
            for prefix, number in NUMBERED.findall(line):
                if prefix in self.sequences and int(number) > self.sequences[prefix]:
                    self.sequences[prefix] = int(number)

    def next(self, prefix: str) -> str:
        self.sequences[prefix] += 1
        return f"{prefix}-{self.sequences[prefix]}"

    def amz_order(self) -> str:
        r = self.rng.randrange
        return f"{r(100, 1000):03d}-{r(10_000_000):07d}-{r(10_000_000):07d}"

    def fulfillment(self, system: str) -> str:
        """FastShip uses an alphanumeric id, ParcelPro a numeric one: partners differ."""
        if system == "3pl-fastship":
            return f"FS{self.rng.getrandbits(40):010X}"
        return f"PP-{self.rng.randrange(10**9, 10**10)}"

    def document(self, system: str) -> str:
        """The id a live partner gives a document created without one (a retry's, a reroute's):
        each partner in its own shape, so two partners never issue the same id."""
        if system.startswith("3pl-"):
            return self.fulfillment(system)
        return f"{system.upper()}-{self.rng.randrange(10**7, 10**8)}"

    def tracking(self, carrier: str) -> str:
        if carrier == "UPS":
            return f"1Z{self.rng.getrandbits(36):09X}{self.rng.randrange(10**7):07d}"
        if carrier == "FedEx":
            return f"{self.rng.randrange(10**11, 10**12)}"
        return f"9400{self.rng.randrange(10**17, 10**18)}"

    def trace_id(self) -> str:
        return f"{self.rng.getrandbits(128) | 1:032x}"

    def span_id(self) -> str:
        return f"{self.rng.getrandbits(64) | 1:016x}"

    def event_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
