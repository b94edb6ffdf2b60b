"""What a live network going on from a generated history takes over from it: the shipment notices
the history's ERP dead-lettered, which nobody re-delivered there, so that a Replay of one of the
history's exceptions finds its message in the live ERP's dead-letter list."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
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


def held_letters(path: Path) -> list[HeldLetter]:
    """The dead letters of a CloudEvents JSONL file (``events/events.jsonl`` of a ``--generate``
    folder, or of sample_data/): each ``com.syncwatch.message.dead_lettered`` notice paired with the
    shipment notice it names. A notice whose shipment notice the file does not hold is left out: it
    has nothing to re-deliver. Read twice, so that only the shipment notices a dead letter names are
    held, not every one of a long history. Raises ValueError naming the line of what cannot be read."""
    letters = {str(data.get("shipment_id")): data for event, data in _events(path) if _is_dead_letter(event, data)}
    shipped: dict[str, dict[str, Any]] = {}
    for event, data in _events(path):
        shipment = str(data.get("shipment_id"))
        if event.get("type") == SHIPPED and shipment in letters:
            shipped.setdefault(shipment, event)
    held: list[HeldLetter] = []
    for shipment, letter in letters.items():
        original = shipped.get(shipment)
        if original is not None:
            ref = str(original["data"]["order_id"])
            reason = str(letter.get("reason", "dead-lettered"))
            held.append(HeldLetter(original, reason, channel_of(ref), ref, str(letter["sales_order"])))
    return held


def _is_dead_letter(event: dict[str, Any], data: dict[str, Any]) -> bool:
    return event.get("type") == DEAD_LETTERED and data.get("original_type") == SHIPPED


def _events(path: Path) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Each event of the file with its data, checked for what pairing a dead letter needs."""
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            try:
                event = json.loads(raw.decode("utf-8")) if raw.strip() else None
            except ValueError as err:  # invalid UTF-8 or JSON
                raise ValueError(f"line {number} is no JSON event ({err})") from None
            if event is None:
                continue
            if not isinstance(event, dict) or not isinstance(event.get("data") or {}, dict):
                raise ValueError(f"line {number} is no CloudEvent: expected an object whose data is an object")
            data = event.get("data") or {}
            if event.get("type") == SHIPPED:
                wanted = ("shipment_id", "order_id")
            else:
                wanted = ("shipment_id", "sales_order") if _is_dead_letter(event, data) else ()
            missing = [key for key in wanted if key not in data]
            if missing:
                raise ValueError(f"line {number}: a {event['type']} event without {', '.join(missing)} in its data")
            yield event, data
