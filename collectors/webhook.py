"""A generic JSON webhook for partners that do not speak CloudEvents (Amazon SP-API notifications,
Shopify webhooks): a configured mapping says where the id, type and time are, and the body
becomes an event observation exactly as a CloudEvent would.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from collectors.base import ItemError, ParseContext, Parsed, Rejection, media_type
from collectors.errors import MalformedInput, UnsupportedContentType
from collectors.events import observation, rfc3339_ns
from collectors.keys import parse_pointer, resolve_pointer
from collectors.otlp_json import load
from syncwatch.config.schema import Webhook
from syncwatch.redact import clip

SHOWN_CHARS = 80  # of a wrong value quoted in a rejection, its '…' included


def locate(locations: list[str], document: Any, headers: Mapping[str, str]) -> tuple[str, Any]:
    """The first present value among ``/json/pointer`` and ``header:Name`` locations, with where it was."""
    for location in locations:
        if location.startswith("header:"):
            value = headers.get(location.removeprefix("header:").strip().lower())
        else:
            value = resolve_pointer(document, parse_pointer(location))
        if value not in (None, ""):
            return location, value
    return "", None


def _text(found: tuple[str, Any], what: str, name: str, kinds: tuple[type, ...] = (str, int, float)) -> str:
    """A located id or type as text; an object, a list or a boolean there is refused, naming where."""
    location, value = found
    if isinstance(value, bool) or not isinstance(value, kinds):
        shown = clip(json.dumps(value, default=str), SHOWN_CHARS)
        expected = "a string or a number" if int in kinds else "an RFC 3339 string"
        raise ItemError(f"webhook {name}: the {what} at {location} must be {expected}, got {shown}")
    return str(value)


def as_event(document: Any, headers: Mapping[str, str], mapping: Webhook, name: str) -> dict[str, Any]:
    """The notification as a structured CloudEvent, so one code path stores every event."""
    found_id = locate(mapping.id, document, headers)
    if found_id[1] is None:
        raise ItemError(f"webhook {name}: no id at {', '.join(mapping.id)}")
    found_type = locate(mapping.type, document, headers)
    if found_type[1] is None and mapping.type_value is None:
        raise ItemError(f"webhook {name}: no type at {', '.join(mapping.type)}")
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": _text(found_id, "id", name),
        "source": mapping.system,
        "type": _text(found_type, "type", name) if found_type[1] is not None else mapping.type_value,
        "datacontenttype": "application/json",
        "data": document,
    }
    found_time = locate(mapping.time, document, headers)
    if found_time[1] is not None:
        event["time"] = _text(found_time, "time", name, (str,))
        try:
            rfc3339_ns(event["time"])
        except ItemError as err:  # said here, where the mapping's location is known
            raise ItemError(f"webhook {name}: at {found_time[0]}, {err}") from None
    return event


def parse(body: bytes, headers: Mapping[str, str], mapping: Webhook, name: str, ctx: ParseContext) -> Parsed:
    media = media_type(headers.get("content-type"))
    if media and media != "application/json" and not media.endswith("+json"):
        raise UnsupportedContentType(f"webhook {name}: content type {media!r} is not supported; send application/json")
    document = load(body)
    if not isinstance(document, dict):
        raise MalformedInput(f"webhook {name}: the body must be a JSON object")
    parsed = Parsed()
    try:
        parsed.rows.append(observation(as_event(document, headers, mapping, name), ctx))
    except ItemError as err:
        parsed.rejections.append(Rejection(str(err), body, "body"))
    return parsed
