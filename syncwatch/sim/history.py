"""What a live network going on from a generated history takes over from it: the shipment notices
the history's ERP dead-lettered, which nobody re-delivered there, so that a Replay of one of the
history's exceptions finds its message in the live ERP's dead-letter list; and the orders the
history's end cut off, so that they go on to their planned end instead of looking stuck."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from syncwatch.sim.clock import to_us
from syncwatch.sim.flow import DEAD_LETTERED, SHIPPED, STEPS, channel_of


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


@dataclass(frozen=True)
class Part:
    """One shipment of an order the history's end cut off: its warehouse and lines, its ids if it
    shipped before the end, and when each of its steps left falls (microseconds since the epoch)."""

    system: str
    first: bool
    """The order's first shipment: the one its fault, if any, happens to."""
    lines: list[dict[str, Any]]
    shipment: str
    tracking: str
    at: dict[str, int]

    @property
    def left(self) -> tuple[str, ...]:
        """Its steps still to do, from the first one the end cut off."""
        return STEPS[min(STEPS.index(stage) for stage in self.at) :]


@dataclass
class InFlight:
    """An order the history's end cut off (a line of ``in_flight.jsonl``): its plan, the ids it
    already has, when each of its own steps left falls, and its shipments with steps left."""

    ref: str
    channel: str
    customer: str
    lines: list[dict[str, Any]]
    fault: str
    erp_order: str
    at: dict[str, int]
    shipments: list[Part]


def in_flight(path: Path) -> list[InFlight]:
    """The orders of a ``--generate --until`` folder's ``in_flight.jsonl``; none when it has no
    such file (a history that ran to the end of its days). Raises ValueError naming the line of
    what cannot be read."""
    if not path.is_file():
        return []
    orders = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                o = json.loads(line)
                parts = [
                    Part(
                        p["system"],
                        bool(p["first"]),
                        list(p["lines"]),
                        p["shipment"] or "",
                        p["tracking"] or "",
                        _at(p),
                    )
                    for p in o["shipments"]
                ]
                orders.append(
                    InFlight(
                        str(o["id"]),
                        str(o["channel"]),
                        str(o["customer"]),
                        list(o["lines"]),
                        o["fault"] or "",
                        o["erp_order"] or "",
                        _at(o),
                        parts,
                    )
                )
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"line {number} is no in-flight order ({err!r})") from None
    return orders


def _at(planned: dict[str, Any]) -> dict[str, int]:
    at = {stage: to_us(_parse(when)) for stage, when in planned["at"].items()}
    if set(at) - set(STEPS):
        raise ValueError(f"unknown steps {sorted(set(at) - set(STEPS))}")
    return at


def _parse(when: str) -> datetime:
    return datetime.fromisoformat(when.replace("Z", "+00:00"))
