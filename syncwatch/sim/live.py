"""Live driver: the network's systems as real HTTP services on 127.0.0.1, instrumented with the
OpenTelemetry SDK, writing access logs and POSTing CloudEvents, with orders flowing in real time.

The decisions (channel, lines, customer, routing, which fault) come from the same ``Network`` the
generator uses; here they are carried out as real requests, and the services fail for real: the
ERP validates master data, a 3PL marked down answers 503, a marketplace throttles with 429.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

import httpx
import uvicorn
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

from syncwatch.sim import access_logs
from syncwatch.sim.flow import Network
from syncwatch.sim.hops import HOSTS
from syncwatch.sim.services import ErpState, PartnerState, erp_app, initial_erp, partner_app

SYSTEMS = ("marketplace-amz", "marketplace-b2b", "erp", "wms", "3pl-fastship", "3pl-parcelpro")
"""In the order of defaults.toml's [partners]: ports are base_port + index."""
REF_ATTR = {
    "marketplace-amz": "amz.order_id",
    "marketplace-b2b": "b2b.po_number",
    "wms": "wms.pick_id",
    "3pl-fastship": "tpl.fulfillment_id",
    "3pl-parcelpro": "tpl.fulfillment_id",
}
GATEWAY_SYSTEMS = {"erp", "wms"}


class AccessLog:
    """nginx lines for our own APIs, Kong JSON lines for the partners', appended as they happen."""

    def __init__(self, folder: Path | None) -> None:
        self.files: dict[str, IO[str]] = {}
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            self.files = {
                name: (folder / name).open("a", encoding="utf-8", buffering=1) for name in ("gateway.log", "edge.jsonl")
            }

    def write(self, system: str, request: Request, status: int, start_us: int, took_us: int) -> None:
        if not self.files:
            return
        client = request.client.host if request.client else "-"
        agent = request.headers.get("user-agent", "-")
        if system in GATEWAY_SYSTEMS:
            line = access_logs.nginx(
                client, start_us, f"{request.method} {request.url.path}", status, 0, agent, took_us
            )
            self.files["gateway.log"].write(line + "\n")
            return
        req = {"method": request.method, "uri": request.url.path, "size": 0, "headers": {"user-agent": agent}}
        entry = access_logs.kong(system, client, start_us, req, {"status": status, "size": 0, "headers": {}}, took_us)
        self.files["edge.jsonl"].write(entry + "\n")

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()


class Telemetry(BaseHTTPMiddleware):
    """A SERVER span per request with HTTP semantic-convention attributes plus the handler's
    business attributes, and an access-log line. 3PLs drop incoming context (batch intake)."""

    def __init__(
        self, app: Any, system: str, tracer: Tracer, access: AccessLog, routes: list[Any], calls: Counter[str]
    ) -> None:
        super().__init__(app)
        self.system, self.tracer, self.access, self.routes, self.calls = system, tracer, access, routes, calls

    def route(self, request: Request) -> str:
        for route in self.routes:
            if route.matches(request.scope)[0] == Match.FULL:
                return route.path
        return request.url.path

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        route = self.route(request)
        self.calls[f"{self.system} {request.method} {route}"] += 1
        context = None if self.system.startswith("3pl-") else extract(dict(request.headers))
        began = time.time_ns()
        with self.tracer.start_as_current_span(
            f"{request.method} {route}", context=context, kind=SpanKind.SERVER
        ) as span:
            response = await call_next(request)
            span.set_attributes(
                {"http.request.method": request.method, "url.path": request.url.path, "http.route": route}
            )
            span.set_attributes(
                {"http.response.status_code": response.status_code, **getattr(request.state, "attrs", {})}
            )
            if response.status_code >= 400:
                span.set_attribute("error.type", str(response.status_code))
                span.set_status(Status(StatusCode.ERROR, getattr(request.state, "error", None)))
        self.access.write(self.system, request, response.status_code, began // 1000, (time.time_ns() - began) // 1000)
        return response


@dataclass
class LiveNetwork:
    """The six services, their state and their tracer providers."""

    erp: ErpState
    partners: dict[str, PartnerState]
    providers: dict[str, TracerProvider]
    apps: dict[str, Starlette]
    access: AccessLog
    events: list[dict[str, Any]] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    """Requests each system received, by "SYSTEM METHOD ROUTE": what tests count creates with."""

    def tracer(self, system: str) -> Tracer:
        return self.providers[system].get_tracer("syncwatch.sim")

    def shutdown(self) -> None:
        for provider in self.providers.values():
            provider.shutdown()
        self.access.close()


def build(
    flow: Network,
    exporter: Callable[[], SpanExporter | None],
    access_dir: Path | None,
    redeliver: Callable[[dict[str, Any]], Any],
) -> LiveNetwork:
    """The services of ``flow``'s network; their own numbering goes on from ``flow.ids``."""
    providers = {system: _provider(system, exporter()) for system in SYSTEMS}
    erp = initial_erp(flow.catalog, flow.ids.sequences["SO"] + 1)
    partners = {system: PartnerState(partial(flow.ids.document, system)) for system in SYSTEMS if system != "erp"}
    access = AccessLog(access_dir)
    apps = {
        system: erp_app(erp, redeliver)
        if system == "erp"
        else partner_app(system, partners[system], REF_ATTR.get(system, "id"))
        for system in SYSTEMS
    }
    network = LiveNetwork(erp, partners, providers, apps, access)
    for system, app in apps.items():
        app.add_middleware(
            Telemetry,
            system=system,
            tracer=providers[system].get_tracer("syncwatch.sim"),
            access=access,
            routes=list(app.routes),
            calls=network.calls,
        )
    return network


def _provider(system: str, exporter: SpanExporter | None) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": system}))
    if exporter is not None:
        # A large queue and frequent flushes: a burst of orders must not drop spans.
        provider.add_span_processor(
            BatchSpanProcessor(exporter, max_queue_size=65_536, max_export_batch_size=1_024, schedule_delay_millis=500)
        )
    return provider


def servers(network: LiveNetwork, host: str, base_port: int) -> list[uvicorn.Server]:
    return [
        uvicorn.Server(
            uvicorn.Config(network.apps[system], host=host, port=base_port + index, log_level="warning", lifespan="off")
        )
        for index, system in enumerate(SYSTEMS)
    ]


async def post(
    client: httpx.AsyncClient,
    tracer: Tracer,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    attrs: dict[str, Any] | None = None,
    *,
    to: str,
) -> httpx.Response:
    """A CLIENT span around the request to system ``to``, its context injected as ``traceparent``;
    ``attrs`` are the caller's own business attributes (its ids for the document, as the generator's
    caller spans carry). ``server.address`` names the partner's host as the generated history does
    (every live partner listens on one local address, which would name none of them)."""
    path = httpx.URL(url).path
    with tracer.start_as_current_span(f"POST {path}", kind=SpanKind.CLIENT) as span:
        carrier: dict[str, str] = dict(headers or {})
        inject(carrier)
        response = await client.post(url, json=body, headers=carrier)
        # The body goes on the span so a failed call can be sent again as it was (syncwatch's retry).
        span.set_attributes(
            {
                "http.request.method": "POST",
                "url.full": url,
                "server.address": HOSTS[to],
                "http.response.status_code": response.status_code,
                "http.request.body": json.dumps(body, sort_keys=True),
                **(attrs or {}),
            }
        )
        if response.status_code >= 400:
            span.set_status(Status(StatusCode.ERROR, response.json().get("error") if _is_json(response) else None))
        return response


def _is_json(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("application/json")
