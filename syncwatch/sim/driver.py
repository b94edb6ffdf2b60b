"""Carries the network's orders through the live services as real HTTP requests."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx
import uvicorn
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExporter

from syncwatch.sim import cloudevents, outage
from syncwatch.sim.catalog import WAREHOUSES
from syncwatch.sim.clock import iso
from syncwatch.sim.faults import FaultProfile
from syncwatch.sim.flow import CAPTURE_ROUTE, DEAD_LETTERED, ORDER_ATTR, SHIPPED, Network, Order
from syncwatch.sim.history import HeldLetter, InFlight, Part
from syncwatch.sim.live import SYSTEMS, LiveNetwork, build, post, servers

T = TypeVar("T")
COLLECTOR_WAIT_S = 30.0  # how long live orders wait for the collectors to accept connections
MINUTE, HOUR = 60, 3600
Pace = Callable[[int, int], Awaitable[None]]
"""Waits between an order's hops: (shortest, longest) in seconds, as the generated history spaces them."""


async def no_pause(_low: int, _high: int) -> None:
    """Instant: every hop at once (tests, benchmarks)."""


def real_time(rng: random.Random) -> Pace:
    """Hops as far apart as in the generated history (an order ships hours after it is captured), so
    live orders move through the early stages while the demo runs instead of finishing in a blink and
    pulling today's cycle time down to seconds."""

    async def pause(low: int, high: int) -> None:
        await asyncio.sleep(low + rng.random() * (high - low))

    return pause


class Delivery:
    """POSTs CloudEvents to the events URL; what cannot be delivered goes to the ERP's dead letters."""

    def __init__(self, client: httpx.AsyncClient, url: str | None) -> None:
        self.client, self.url = client, url
        self.delivered: list[dict[str, Any]] = []
        self.dead_letters: dict[str, dict[str, Any]] | None = None

    async def send(self, event: dict[str, Any]) -> bool:
        if self.url:
            try:
                headers = {"content-type": "application/cloudevents+json"}
                response = await self.client.post(self.url, content=json.dumps(event), headers=headers)
                response.raise_for_status()
            except httpx.HTTPError as err:
                self.dead_letter(event, f"delivery failed: {err}")
                return False
        self.delivered.append(event)
        return True

    def dead_letter(self, event: dict[str, Any], reason: str) -> None:
        if self.dead_letters is not None:
            self.dead_letters[event["id"]] = {"id": event["id"], "reason": reason, "event": event}


class Confirmable(Protocol):
    """What confirming a shipment to the marketplace and invoicing it needs of its order: a live
    ``Order``, a history's order whose notice is in the dead-letter list (a ``HeldLetter``), or one
    the history's end cut off (an ``InFlight``)."""

    @property
    def channel(self) -> str: ...

    @property
    def ref(self) -> str: ...

    @property
    def erp_order(self) -> str: ...


class Driver:
    def __init__(self, network: LiveNetwork, flow: Network, urls: dict[str, str], delivery: Delivery) -> None:
        self.network, self.flow, self.urls, self.delivery = network, flow, urls, delivery
        self.client = delivery.client
        delivery.dead_letters = network.erp.dead_letters
        self.unshipped: dict[str, Confirmable] = {}
        """Orders whose release failed, by sales order: a fulfilment created for one later ships."""
        self.unnoticed: dict[str, Confirmable] = {}
        """Orders whose shipment notice was dead-lettered, by sales order: a re-delivery moves them on."""
        self.background: set[asyncio.Task[Any]] = set()
        self.pace: Pace = no_pause
        self.on_time = False
        """Whether an order taken over from a history waits for each stage's planned time (run_live)."""
        for system in WAREHOUSES.values():
            network.partners[system].on_create = self._fulfilment_created(system)

    def hold(self, letters: Iterable[HeldLetter]) -> None:
        """Take over a history's dead letters: the ERP lists them, the marketplace knows their orders,
        and a re-delivery confirms and invoices the order as it does one dead-lettered live."""
        for held in letters:
            self.network.erp.dead_letters[held.event["id"]] = held.letter
            self.unnoticed[held.erp_order] = held
            self.network.partners[held.channel].documents.setdefault(held.ref, {"id": held.ref, "status": "open"})

    def know(self, orders: Iterable[InFlight]) -> None:
        """Know what a history's unfinished orders already are: the marketplace holds each order, the
        ERP each one it accepted (and its items, a blocked customer as blocked), so their next calls
        meet the same documents as in the history."""
        erp = self.network.erp
        for order in orders:
            self.network.partners[order.channel].documents.setdefault(order.ref, {"id": order.ref, "status": "open"})
            erp.skus.update(str(line["sku"]) for line in order.lines)
            if order.fault == "blocked_customer":
                erp.blocked.add(order.customer)
            if order.erp_order:
                status = "open" if "allocated" in order.at else "allocated"
                body = {"external_ref": order.ref, "customer": order.customer, "lines": order.lines}
                erp.orders[order.erp_order] = {"sales_order": order.erp_order, "status": status, **body}
                erp.idempotent[order.ref] = (201, erp.orders[order.erp_order])

    async def take_over(self, orders: Sequence[InFlight]) -> None:
        """Carry a history's unfinished orders on in the background: at their planned times when
        ``on_time``, else one after another at once (so one order's partner fault meets no other's call)."""
        if self.on_time:
            for order in orders:
                self._background(self.carry_on(order))
        else:
            self._background(self._in_turn(orders))

    async def _in_turn(self, orders: Sequence[InFlight]) -> None:
        for order in orders:
            await self.carry_on(order)

    async def carry_on(self, order: InFlight) -> None:
        """The steps the history's end cut off, each at its planned time (at once if already due), as
        a live order does them: its fault fails the same call and stops it where the history's would."""
        if "accepted_by_erp" in order.at:
            await self._when(order.at["accepted_by_erp"])
            created = await self.accept(order, [dict(line) for line in order.lines], order.fault)
            if created.status_code != 201:
                return
            order.erp_order = created.json()["sales_order"]
        if "allocated" in order.at:
            await self._when(order.at["allocated"])
            url = self.url("erp", f"/sales-orders/{order.erp_order}/allocate")
            await post(self.client, self.network.tracer("erp"), url, {}, to="erp")
        await asyncio.gather(*(self._carry_shipment(order, part) for part in order.shipments))

    async def _carry_shipment(self, order: InFlight, part: Part) -> None:
        fault, shipment, tracking, at = order.fault if part.first else "", part.shipment, part.tracking, 0
        for stage in part.left:
            at = part.at.get(stage, at)
            await self._when(at)
            if stage == "released":
                released = await self.release(order, part.system, fault)
                if released.status_code >= 400:
                    self.unshipped[order.erp_order] = order
                    return
            elif stage == "shipped":
                shipment, tracking = self.flow.ids.next("SH"), self.flow.ids.tracking("UPS")
                await self.ship(order, part.system, shipment, tracking, fault, part.lines)
                if fault == "dead_letter":
                    return
            elif stage == "confirmed" and fault == "dead_letter":  # shipped in the history, dead-lettered after
                await self.dead_lettered(order, self.shipped_event(order, part.system, shipment, tracking, part.lines))
                return
            elif stage == "confirmed":
                await self.confirm(order, shipment, tracking, fault == "throttled")
            else:
                await self.invoice(order, shipment)

    async def _when(self, at_us: int) -> None:
        if self.on_time:
            await asyncio.sleep(max(0.0, at_us / 1e6 - time.time()))

    def _fulfilment_created(self, system: str) -> Callable[[dict[str, Any]], Awaitable[None]]:
        """A warehouse ships what it receives: a fulfilment sent for a failed release (a reroute or a
        retry) is shipped, confirmed to the marketplace and invoiced, once."""

        async def created(document: dict[str, Any]) -> None:
            order = self.unshipped.pop(str(document.get("tpl.client_order") or document.get("wms.order_ref")), None)
            if order is not None:
                self._background(self.complete(order, system, ""))

        return created

    async def settle(self) -> None:
        """Wait for shipments started in the background (tests call this instead of sleeping)."""
        while self.background:
            await asyncio.gather(*list(self.background))

    async def order(self, now_us: int) -> dict[str, Any]:
        """One order from capture to invoice; returns its ids and how far it got."""
        order = self.flow.new_order(now_us)
        lines = [{"sku": item.sku, "qty": qty} for item, qty in order.lines]
        if order.fault is not None and order.fault.name == "unknown_sku":
            lines[0]["sku"] = self.flow.catalog.unknown_sku(self.flow.rng)
        captured = await self.client.post(
            self.url(order.channel, CAPTURE_ROUTE[order.channel]), json=self.capture_body(order, lines)
        )
        if order.ref not in self.network.partners[order.channel].documents:  # a marketplace that is down
            return {"order": order.ref, "outcome": "capture_failed", "status": captured.status_code}
        await self.pace(MINUTE, 12 * MINUTE)
        erp = self.network.tracer("erp")
        created = await self.accept(order, lines, "")
        if created.status_code != 201:
            return {"order": order.ref, "outcome": "rejected", "status": created.status_code}
        order.erp_order = created.json()["sales_order"]
        await self.pace(MINUTE, 20 * MINUTE)
        await post(self.client, erp, self.url("erp", f"/sales-orders/{order.erp_order}/allocate"), {}, to="erp")
        await self.pace(MINUTE, 30 * MINUTE)
        return await self.fulfil(order)

    async def accept(self, order: Order | InFlight, lines: list[dict[str, Any]], fault: str) -> httpx.Response:
        """The channel's connector posts the order to the ERP (with the unknown SKU an
        ``unknown_sku`` fault sends, for a history's order: a live one's lines carry it already)."""
        if fault == "unknown_sku":
            lines[0]["sku"] = self.flow.catalog.unknown_sku(random.Random(order.ref))
        body = {"external_ref": order.ref, "customer": order.customer, "lines": lines}
        return await post(
            self.client,
            self.network.tracer(order.channel),
            self.url("erp", "/sales-orders"),
            body,
            {"Idempotency-Key": order.ref},
            attrs={ORDER_ATTR[order.channel]: order.ref},
            to="erp",
        )

    def capture_body(self, order: Order, lines: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": order.ref,
            "lines": lines,
            "order.promised_ship_by": iso(order.promised),
            "order.total": order.total,
            "customer": order.customer,
        }

    def url(self, system: str, path: str) -> str:
        return self.urls[system] + path

    async def fulfil(self, order: Order) -> dict[str, Any]:
        system = WAREHOUSES[self.flow.route(order)[1][0][0]]
        fault = order.fault.name if order.fault else ""
        released = await self.release(order, system, fault)
        if released.status_code >= 400:
            self.unshipped[order.erp_order] = order
            return {
                "order": order.ref,
                "sales_order": order.erp_order,
                "outcome": "release_failed",
                "status": released.status_code,
                "system": system,
            }
        return await self.complete(order, system, fault)

    async def complete(self, order: Confirmable, system: str, fault: str) -> dict[str, Any]:
        """Ship, confirm to the marketplace and invoice a released order."""
        shipment, tracking = self.flow.ids.next("SH"), self.flow.ids.tracking("UPS")
        await self.pace(2 * HOUR, (18 if system == "wms" else 26) * HOUR)
        await self.ship(order, system, shipment, tracking, fault)
        if fault != "dead_letter":
            await self.confirm_and_invoice(order, shipment, tracking, fault)
        return {
            "order": order.ref,
            "sales_order": order.erp_order,
            "shipment": shipment,
            "tracking": tracking,
            "outcome": fault or "ok",
        }

    async def confirm_and_invoice(self, order: Confirmable, shipment: str, tracking: str, fault: str) -> None:
        await self.pace(5 * MINUTE, HOUR)
        await self.confirm(order, shipment, tracking, fault == "throttled")
        await self.pace(30 * MINUTE, 8 * HOUR)
        await self.invoice(order, shipment)

    async def invoice(self, order: Confirmable, shipment: str) -> None:
        invoice = {
            "erp.sales_order": order.erp_order,
            "erp.invoice": self.flow.ids.next("INV"),
            "shipment.id": shipment,
        }
        await post(self.client, self.network.tracer("erp"), self.url("erp", "/invoices"), invoice, to="erp")

    async def release(self, order: Confirmable, system: str, fault: str) -> httpx.Response:
        erp, mine = self.network.tracer("erp"), {"erp.sales_order": order.erp_order}
        if system == "wms":
            return await post(
                self.client,
                erp,
                self.url("wms", "/pick-orders"),
                {"wms.order_ref": order.erp_order},
                attrs=mine,
                to="wms",
            )
        state = self.network.partners[system]
        state.down, state.slow = state.down or fault == "partner_down", state.slow or fault == "partner_timeout"
        try:
            return await post(
                self.client,
                erp,
                self.url(system, "/fulfillment-orders"),
                {"tpl.client_order": order.erp_order},
                attrs=mine,
                to=system,
            )
        finally:
            state.down, state.slow = state.down and fault != "partner_down", state.slow and fault != "partner_timeout"

    async def ship(
        self,
        order: Confirmable,
        system: str,
        shipment: str,
        tracking: str,
        fault: str,
        lines: list[dict[str, Any]] | None = None,
    ) -> None:
        event = self.shipped_event(order, system, shipment, tracking, lines)
        if fault == "dead_letter":
            await self.dead_lettered(order, event)
            return
        await self.delivery.send(event)
        if fault == "duplicate_notice":
            await self.delivery.send(event)

    def shipped_event(
        self, order: Confirmable, system: str, shipment: str, tracking: str, lines: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The warehouse's shipment notice; ``lines`` when only some of the order's lines shipped
        (a history's split order), so that the others count as outstanding until they ship."""
        data: dict[str, Any] = {
            "order_id": order.ref,
            "sales_order": order.erp_order,
            "shipment_id": shipment,
            "tracking_number": tracking,
            "carrier": "UPS",
        }
        if lines is not None:
            data["lines"] = lines
        return json.loads(cloudevents.event(self.flow.ids.event_id(), system, SHIPPED, time.time_ns() // 1000, data))

    async def dead_lettered(self, order: Confirmable, event: dict[str, Any]) -> None:
        """The ERP's consumer gives up on the notice: it waits in the dead-letter list for a Replay."""
        self.unnoticed[order.erp_order] = order
        reason = "consumer rejected the message 5 times"
        self.delivery.dead_letter(event, reason)
        await self.delivery.send(self.dead_letter_notice(event, reason))

    async def redelivered(self, event: dict[str, Any]) -> bool:
        """The ERP re-delivers a dead letter: once it goes through, the ERP confirms and invoices."""
        if not await self.delivery.send(event):
            return False
        order = self.unnoticed.pop(str(event.get("data", {}).get("sales_order")), None)
        if order is not None:
            data = event["data"]
            self._background(self.confirm_and_invoice(order, data["shipment_id"], data["tracking_number"], ""))
        return True

    def _background(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def dead_letter_notice(self, event: dict[str, Any], reason: str) -> dict[str, Any]:
        """What the ERP's message bus announces when it gives up on a message, as the generator writes it."""
        data = {"original_type": event["type"], "original_source": event["source"], **event["data"], "reason": reason}
        at = time.time_ns() // 1000
        return json.loads(cloudevents.event(self.flow.ids.event_id(), "erp", DEAD_LETTERED, at, data))

    async def confirm(self, order: Confirmable, shipment: str, tracking: str, throttled: bool) -> None:
        if throttled:
            self.network.partners[order.channel].throttle = 1
        url = self.url(order.channel, f"/orders/{order.ref}/shipment-confirmation")
        body = {"shipment.id": shipment, "shipment.tracking_number": tracking}
        mine = {"erp.sales_order": order.erp_order, "shipment.id": shipment}
        response = await post(self.client, self.network.tracer("erp"), url, body, attrs=mine, to=order.channel)
        if response.status_code == 429:
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))
            await post(self.client, self.network.tracer("erp"), url, body, attrs=mine, to=order.channel)


class Silent:
    """The live driver's ``Emitter`` for the shared ``Network``: the services emit for real."""

    def span(self, *_args: Any) -> None:
        return None

    def access(self, *_args: Any) -> None:
        return None

    def log(self, *_args: Any) -> None:
        return None

    def event(self, *_args: Any) -> None:
        return None


@dataclass(frozen=True)
class LiveOptions:
    host: str = "127.0.0.1"
    base_port: int = 8101
    otlp_endpoint: str | None = None
    events_url: str | None = None
    access_log_dir: Path | None = None
    orders_per_minute: float = 6.0
    seed: int = 1
    continue_after: Path | None = None
    """A generated history's ground truth: live documents are numbered after its ids."""
    held: tuple[HeldLetter, ...] = ()
    """A history's dead letters (``history.held_letters``): the ERP starts with them (``Driver.hold``)."""
    in_flight: tuple[InFlight, ...] = ()
    """A history's unfinished orders (``history.in_flight``): the services know them from the start
    (``Driver.know``) and ``run_live`` carries them on (``Driver.take_over``)."""
    real_time: bool = True
    """Hops as far apart as in the history (hours to ship); False: each order runs through at once."""
    admin_port: int | None = None
    """Where ``POST /_sim/outage`` listens on 127.0.0.1 (``outage.admin_port``); None: outages cannot be staged."""


@asynccontextmanager
async def running(
    options: LiveOptions, profile: FaultProfile, exporter: Callable[[], SpanExporter | None]
) -> AsyncIterator[Driver]:
    """Serve the six systems until the block ends; yield the driver that sends orders through them."""
    flow = Network(random.Random(options.seed), profile, Silent(), end=2**62)
    client = httpx.AsyncClient(timeout=30)
    delivery = Delivery(client, options.events_url)
    drivers: list[Driver] = []
    if options.continue_after is not None:
        with options.continue_after.open(encoding="utf-8") as truth:
            flow.ids.continue_after(truth)
    network = build(flow, exporter, options.access_log_dir, lambda event: drivers[0].redelivered(event))
    urls = {system: f"http://{options.host}:{options.base_port + i}" for i, system in enumerate(SYSTEMS)}
    pool = servers(network, options.host, options.base_port)
    tasks = [asyncio.create_task(server.serve()) for server in pool]
    admin = outage.admin_socket(options.admin_port) if options.admin_port is not None else None
    if admin is not None:
        pool.append(
            uvicorn.Server(uvicorn.Config(outage.admin_app(network.partners), log_level="warning", lifespan="off"))
        )
        tasks.append(asyncio.create_task(pool[-1].serve(sockets=[admin])))
    try:
        while not all(server.started for server in pool):
            await asyncio.sleep(0.02)
        drivers.append(Driver(network, flow, urls, delivery))
        drivers[0].hold(options.held)
        drivers[0].know(options.in_flight)
        yield drivers[0]
    finally:
        for server in pool:
            server.should_exit = True
        await asyncio.gather(*tasks)
        if admin is not None:
            admin.close()
        await client.aclose()
        network.shutdown()


def otlp_exporter(endpoint: str | None) -> Callable[[], SpanExporter | None]:
    if endpoint is None:
        return lambda: None
    return lambda: OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")


async def run_live(options: LiveOptions, profile: FaultProfile) -> None:
    """Run until cancelled, starting ``orders_per_minute`` orders a minute; the services answer at
    once, the orders start when the collectors accept connections."""
    async with running(options, profile, otlp_exporter(options.otlp_endpoint)) as driver:
        await wait_for_collectors([options.otlp_endpoint, options.events_url])
        if options.real_time:
            driver.pace = real_time(random.Random(options.seed + 1))  # its own: the orders' faults stay as seeded
            driver.on_time = True
        await driver.take_over(options.in_flight)
        while True:
            if options.real_time:
                driver._background(driver.order(time.time_ns() // 1000))  # it takes hours: the next starts meanwhile
            else:
                await driver.order(time.time_ns() // 1000)
            await asyncio.sleep(60 / options.orders_per_minute)


async def wait_for_collectors(urls: Sequence[str | None], timeout_s: float = COLLECTOR_WAIT_S) -> bool:
    """Whether every URL's host accepted a connection within ``timeout_s``. Started beside its
    collector (as the demo does), the network's first spans would otherwise meet a refused
    connection, and the exporter would print its retry warnings on the first screen. It says
    once that it waits, and once if it gives up and goes on (the exporter keeps retrying)."""
    waiting = {
        (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        for parts in map(urlsplit, filter(None, urls))
    }
    deadline, said = time.monotonic() + timeout_s, False
    while waiting:
        for address in sorted(waiting, key=str):
            if await _accepts(*address):
                waiting.discard(address)
        if not waiting:
            break
        names = ", ".join(f"{host}:{port}" for host, port in sorted(waiting, key=str))
        if time.monotonic() >= deadline:
            print(
                f"syncwatch sim: nothing accepts connections at {names} after {timeout_s:g} s; sending anyway",
                file=sys.stderr,
            )
            return False
        if not said:
            print(f"syncwatch sim: waiting for {names} to accept connections before sending orders", file=sys.stderr)
            said = True
        await asyncio.sleep(0.2)
    return True


async def _accepts(host: str | None, port: int) -> bool:
    try:  # a host that drops packets must not hold the wait past its deadline
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=2)
    except OSError:  # refused, unreachable, or timed out (TimeoutError is an OSError)
        return False
    writer.close()
    with suppress(OSError):  # a reset on hang-up still means it listens
        await writer.wait_closed()
    return True


class LiveThread:
    """The live network on its own event loop in a background thread, for synchronous callers
    (tests and benchmarks that act on it through syncwatch's own, synchronous, action layer)."""

    def __init__(
        self, options: LiveOptions, profile: FaultProfile, exporter: Callable[[], SpanExporter | None]
    ) -> None:
        self.options, self.profile, self.exporter = options, profile, exporter
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),), daemon=True)
        self.driver: Driver | None = None
        self.failure: BaseException | None = None

    async def _main(self) -> None:
        self.stop = asyncio.Event()
        try:
            async with running(self.options, self.profile, self.exporter) as driver:
                self.driver = driver
                self.ready.set()
                await self.stop.wait()
        except BaseException as err:  # handed to the caller's thread, which raises it
            self.failure = err
            self.ready.set()

    def __enter__(self) -> Driver:
        self.thread.start()
        self.ready.wait()
        if self.failure is not None or self.driver is None:
            raise RuntimeError("the live network did not start") from self.failure
        return self.driver

    def call(self, coroutine: Awaitable[T]) -> T:
        """Run a coroutine on the network's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(_awaited(coroutine), self.loop).result()

    def flush(self) -> None:
        """Export every span the services have ended, so the collector has them now."""
        assert self.driver is not None
        for provider in self.driver.network.providers.values():
            provider.force_flush()

    def __exit__(self, *_exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join()
        self.loop.close()


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable
