"""The failed step as a request again: which partner it went to, its method, path and body —
read from the stored observations of the failure, never guessed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from actions.errors import InvalidEdit, NotActionable
from actions.services import Services

BODY_ATTRIBUTE = "http.request.body"


@dataclass(frozen=True)
class Step:
    """The request to send again. ``original`` is the stored body; ``body`` what will be sent."""

    partner: str
    method: str
    path: str
    original: dict[str, Any] | None
    body: dict[str, Any] | None
    edited: bool = False


def failed_step(services: Services, observations: list[dict[str, Any]], edit: dict[str, Any] | None) -> Step:
    """The request behind the failure; ``edit`` (the agent's version of the body) replaces it once valid."""
    if not observations:
        raise NotActionable("the failure has no stored observation to re-send")
    partner = sent_to(services, observations)
    method, path = _method_and_path(observations)
    original = first_body(observations)
    if edit is not None:
        _validate_edit(original, edit)
        return Step(partner, method, path, original, edit, edited=True)
    if original is None and method in ("POST", "PUT", "PATCH"):
        raise NotActionable("the original request body was not recorded; supply the payload to send")
    return Step(partner, method, path, original, original)


def sent_to(services: Services, observations: list[dict[str, Any]]) -> str:
    """Where the request went: the address a client span called (its URL, else the server it names:
    a partner behind a proxy or on another port still has its host among the partner's), else the
    system that answered."""
    for obs in observations:
        attrs = obs["attributes"] or {}
        for address in (attrs.get("url.full"), attrs.get("server.address")):
            found = services.partner_at(str(address)) if address else None
            if found:
                return found
    for obs in observations:
        if (obs["attributes"] or {}).get("span.kind") != "client" and obs["system"] in services.config.file.partners:
            return str(obs["system"])
    raise NotActionable(f"no configured partner matches where {observations[0].get('operation', 'it')} was sent")


def _method_and_path(observations: list[dict[str, Any]]) -> tuple[str, str]:
    for obs in observations:
        attrs = obs["attributes"] or {}
        method = attrs.get("http.request.method") or attrs.get("http.method")
        path = attrs.get("url.path") or (urlsplit(str(attrs["url.full"])).path if attrs.get("url.full") else None)
        if method and path:
            return str(method), str(path)
    method, _, path = str(observations[0]["operation"]).partition(" ")
    if not path.startswith("/") or "{" in path:
        raise NotActionable(f"the step {observations[0]['operation']} is not a request that can be sent again")
    return method, path


def first_body(observations: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The body recorded on the failure's observations (the failing span, or its client or server twin)."""
    return next((b for b in map(recorded_body, observations) if b is not None), None)


def recorded_body(obs: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON object a request carried, from the payload or the span's body attribute, if recorded."""
    raw = obs["payload"] or (obs["attributes"] or {}).get(BODY_ATTRIBUTE)
    if raw is None:
        return None
    try:
        body = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _validate_edit(original: dict[str, Any] | None, edit: Any) -> None:
    """An edit keeps the request's shape: a JSON object with every original field, of the same kind."""
    if not isinstance(edit, dict):
        raise InvalidEdit("the edited payload must be a JSON object")
    try:
        json.dumps(edit)
    except (TypeError, ValueError) as err:
        raise InvalidEdit(f"the edited payload is not JSON: {err}") from None
    for name, value in (original or {}).items():
        if name not in edit:
            raise InvalidEdit(f"the edited payload lacks the field {name!r} the original had")
        if value is not None and edit[name] is not None and type(edit[name]) is not type(value):
            raise InvalidEdit(f"field {name!r} must stay a {type(value).__name__}")
