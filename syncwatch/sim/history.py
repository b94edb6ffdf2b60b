"""What a live network going on from a generated history takes over from it: the shipment notices
the history's ERP dead-lettered, which nobody re-delivered there, so that a Replay of one of the
history's exceptions finds its message in the live ERP's dead-letter list."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from syncwatch.sim.flow import DEAD_LETTERED, SHIPPED, channel_of


@dataclass(frozen=True)
class HeldLetter:
    """A dead-lettered shipment notice, and the order it left unconfirmed and uninvoiced."""

    event: dict[str, Any]
    """The notice as the warehouse first sent it: a re-delivery sends it again, under its own id."""
    reason: str
    channel: str
    ref: str
    erp_order: str

    @property
    def letter(self) -> dict[str, Any]:
        """The entry of the ERP's dead-letter list, in the shape the live ERP lists its own."""
        return {"id": self.event["id"], "reason": self.reason, "event": self.event}


def held_letters(lines: Iterable[str]) -> list[HeldLetter]:
    """The dead letters of a CloudEvents JSONL file (``events/events.jsonl`` of a ``--generate``
    folder, or of sample_data/): each ``com.syncwatch.message.dead_lettered`` notice paired with the
    shipment notice it names. A notice whose shipment notice the file does not hold is left out: it
    has nothing to re-deliver."""
    shipped: dict[str, dict[str, Any]] = {}
    held: list[HeldLetter] = []
    for line in lines:
        if not line.strip():
            continue
        event = json.loads(line)
        data = event.get("data") or {}
        if event.get("type") == SHIPPED:
            shipped.setdefault(str(data.get("shipment_id")), event)
        elif event.get("type") == DEAD_LETTERED and data.get("original_type") == SHIPPED:
            original = shipped.get(str(data.get("shipment_id")))
            if original is not None:
                ref = str(original["data"]["order_id"])
                reason = str(data.get("reason", "dead-lettered"))
                held.append(HeldLetter(original, reason, channel_of(ref), ref, str(data["sales_order"])))
    return held
