"""One HTTP request between two systems, and the telemetry each side and the gateway write."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from syncwatch.sim.otlp_json import AttrValue

Ctx = tuple[str, str]
"""A span context: (trace id, span id)."""

Attrs = dict[str, AttrValue]

HOSTS = {
    "marketplace-amz": "sellingpartner.amz.example",
    "marketplace-b2b": "portal.b2b.example",
    "erp": "erp.internal",
    "wms": "wms.internal",
    "3pl-fastship": "api.fastship.example",
    "3pl-parcelpro": "edi.parcelpro.example",
}

REASONS = {
    201: "Created",
    200: "OK",
    202: "Accepted",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(slots=True)
class Hop:
    """A request from ``caller`` ("" when the client is not instrumented) to ``system``.

    ``reached`` is false when the server never handled it (a partner down behind its gateway, a
    timeout): then only the caller and the gateway write anything. ``propagate`` says whether the
    server continued the caller's trace or started its own (a 3PL batch intake, a webhook).
    """

    caller: str
    system: str
    method: str
    route: str
    path: str
    status: int
    start: int
    took: int
    attrs: Attrs
    caller_attrs: Attrs | None = None
    error: str | None = None
    retry_after: int | None = None
    reached: bool = True
    propagate: bool = True
    size: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.method} {self.route}"

    def server_attrs(self) -> Attrs:
        http: Attrs = {
            "http.request.method": self.method,
            "url.path": self.path,
            "http.route": self.route,
            "http.response.status_code": self.status,
        }
        if self.status >= 400:
            http["error.type"] = str(self.status)
        return {**http, **self.attrs}

    def client_attrs(self) -> Attrs:
        http: Attrs = {
            "http.request.method": self.method,
            "server.address": HOSTS[self.system],
            "url.full": f"https://{HOSTS[self.system]}{self.path}",
            "http.response.status_code": self.status,
        }
        if self.status >= 400:
            http["error.type"] = str(self.status)
        return {**http, **(self.caller_attrs or {})}


class Emitter(Protocol):
    """Where the network's telemetry goes: files under a virtual clock, or real exporters."""

    def span(
        self, system: str, ids: tuple[str, str, str | None], hop: Hop, kind: int, start: int, end: int
    ) -> None: ...

    def access(self, hop: Hop, ctx: Ctx | None) -> None: ...

    def log(self, system: str, at: int, severity: str, body: str, attrs: Attrs, ctx: Ctx | None) -> None: ...

    def event(
        self, source: str, type_: str, at: int, data: dict[str, object], ctx: Ctx | None, event_id: str
    ) -> None: ...
