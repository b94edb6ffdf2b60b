"""A generic JSON webhook for partners that do not speak CloudEvents (Amazon SP-API notifications,
Shopify webhooks): a configured mapping says where the id, type and time are, and the body
becomes an event observation exactly as a CloudEvent would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collectors.base import ItemError, ParseContext, Parsed, Rejection
from collectors.errors import MalformedInput
from collectors.events import observation
from collectors.keys import parse_pointer, resolve_pointer
from collectors.otlp_json import load
from syncwatch.config.schema import Webhook


def locate(locations: list[str], document: Any, headers: Mapping[str, str]) -> Any:
    """The first present value among ``/json/pointer`` and ``header:Name`` locations."""
    for location in locations:
        if location.startswith("header:"):
            value = headers.get(location.removeprefix("header:").strip().lower())
        else:
            value = resolve_pointer(document, parse_pointer(location))
        if value not in (None, ""):
            return value
    return None


def as_event(document: Any, headers: Mapping[str, str], mapping: Webhook, name: str) -> dict[str, Any]:
    """The notification as a structured CloudEvent, so one code path stores every event."""
    event_id = locate(mapping.id, document, headers)
    if event_id is None:
        raise ItemError(f"webhook {name}: no id at {', '.join(mapping.id)}")
    event_type = locate(mapping.type, document, headers) or mapping.type_value
    if event_type is None:
        raise ItemError(f"webhook {name}: no type at {', '.join(mapping.type)}")
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(event_id),
        "source": mapping.system,
        "type": str(event_type),
        "datacontenttype": "application/json",
        "data": document,
    }
    time = locate(mapping.time, document, headers)
    if time is not None:
        event["time"] = time
    return event


def parse(body: bytes, headers: Mapping[str, str], mapping: Webhook, name: str, ctx: ParseContext) -> Parsed:
    document = load(body)
    if not isinstance(document, dict):
        raise MalformedInput(f"webhook {name}: the body must be a JSON object")
    parsed = Parsed()
    try:
        parsed.rows.append(observation(as_event(document, headers, mapping, name), ctx))
    except ItemError as err:
        parsed.rejections.append(Rejection(str(err), body, "body"))
    return parsed
