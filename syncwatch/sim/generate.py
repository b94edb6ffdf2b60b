"""Fast-forward driver: run the network under a virtual clock and write its telemetry to files.

Orders are started in time order, so once an order starts at T nothing can still be emitted
before T: records wait in one-minute windows and are written, sorted, as soon as their window
closes. Each window becomes one OTLP request line per signal, grouped by system, as a Collector's
batch processor and file exporter would write it.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import IO

from syncwatch.sim import access_logs, cloudevents, otlp_json
from syncwatch.sim.clock import DAY, HOUR, MINUTE, to_us
from syncwatch.sim.faults import FaultProfile
from syncwatch.sim.flow import Network, Record
from syncwatch.sim.hops import Attrs, Ctx, Hop

WINDOW = 5 * MINUTE
"""A virtual batch window: one OTLP request line per signal per window, like a Collector's batches."""
HOURLY_WEIGHTS = (5, 4, 3, 2, 1, 1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9, 9, 8, 8, 7, 6)
"""Orders per UTC hour: North American shoppers and buyers, quiet overnight."""
INVENTORY_SHARE = 10
"""One inventory adjustment per this many orders."""
GATEWAY_SYSTEMS = {"erp", "wms"}
"""Our own APIs sit behind the nginx gateway; our calls out to partners pass the Kong edge. A
buyer's request to a marketplace passes neither, so no access log sees it."""
CALLERS = {
    "": ("203.0.113.{}", "Mozilla/5.0 (compatible; storefront)"),
    "erp": ("10.20.3.5", "erp-integration/7.2 python-httpx/0.28"),
    "wms": ("10.20.4.8", "wms-agent/5.1"),
    "marketplace-amz": ("10.20.1.11", "amz-connector/3.4.1"),
    "marketplace-b2b": ("10.20.1.12", "b2b-edi-bridge/2.1"),
}
FILES = {
    "traces": "otlp/traces.jsonl",
    "logs": "otlp/logs.jsonl",
    "gateway": "access/gateway.log",
    "edge": "access/edge.jsonl",
    "events": "events/events.jsonl",
    "truth": "ground_truth.jsonl",
}
OBSERVED = ("traces", "logs", "gateway", "edge", "events")
"""The files of ``FILES`` that hold what the systems reported: what to ingest (not the truth)."""
IN_FLIGHT = "in_flight.jsonl"
"""Written beside the others when ``--until`` cuts the traffic: the orders the cut left unfinished,
with what is left of each (``Record.carried``), for the live network that goes on from there."""


@dataclass(frozen=True)
class Plan:
    days: int
    orders_per_day: int
    seed: int
    start: datetime
    profile: FaultProfile
    until: datetime | None = None
    """Where the traffic stops within the last day (a demo's 'now'): nothing starts or is emitted after it."""

    @property
    def end(self) -> int:
        end = to_us(self.start) + self.days * DAY
        return min(end, to_us(self.until)) if self.until else end


@dataclass
class Summary:
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("orders", "returns", "inventory_syncs", "spans", "logs", "events", "access_lines"), 0
        )
    )
    faults: dict[str, int] = field(default_factory=dict)

    @property
    def records(self) -> int:
        return sum(self.counts[k] for k in ("spans", "logs", "events", "access_lines"))


class Windows:
    """Encoded records held per window until the window closes."""

    def __init__(self) -> None:
        self.held: dict[int, list[tuple[int, str, str]]] = defaultdict(list)

    def add(self, at: int, group: str, text: str) -> None:
        self.held[at // WINDOW].append((at, group, text))

    def closed(self, before: int) -> list[list[tuple[int, str, str]]]:
        ready = sorted(w for w in self.held if w < before // WINDOW)
        return [sorted(self.held.pop(w), key=itemgetter(0)) for w in ready]


class FileEmitter:
    """The ``Emitter`` that encodes records and writes them in time order."""

    def __init__(self, files: dict[str, IO[str]], end: int, summary: Summary) -> None:
        self.files = files
        self.end = end
        self.summary = summary
        self.signals = {name: Windows() for name in ("traces", "logs", "gateway", "edge", "events")}

    def span(self, system: str, ids: tuple[str, str, str | None], hop: Hop, kind: int, start: int, end: int) -> None:
        if start >= self.end:
            return
        attrs = hop.server_attrs() if kind == otlp_json.SERVER else hop.client_attrs()
        error = hop.error if hop.status >= 400 else None
        text = otlp_json.span(ids, hop.name, kind, start * 1000, end * 1000, attrs, error)
        self.signals["traces"].add(start, system, text)

    def log(self, system: str, at: int, severity: str, body: str, attrs: Attrs, ctx: Ctx | None) -> None:
        if at < self.end:
            self.signals["logs"].add(at, system, otlp_json.log_record(at * 1000, severity, body, attrs, ctx))

    def event(self, source: str, type_: str, at: int, data: dict[str, object], ctx: Ctx | None, event_id: str) -> None:
        if at < self.end:
            traceparent = f"00-{ctx[0]}-{ctx[1]}-01" if ctx else None
            self.signals["events"].add(at, source, cloudevents.event(event_id, source, type_, at, data, traceparent))

    def access(self, hop: Hop, ctx: Ctx | None) -> None:
        if hop.start >= self.end or (hop.system not in GATEWAY_SYSTEMS and not hop.caller):
            return
        address, agent = CALLERS[hop.caller if hop.caller in CALLERS else "erp"]
        address = address.format(hop.start % 250 + 2)
        if hop.system in GATEWAY_SYSTEMS:
            line = access_logs.nginx(
                address, hop.start, f"{hop.method} {hop.path}", hop.status, hop.size, agent, hop.took
            )
            self.signals["gateway"].add(hop.start, "", line)
        else:
            self.signals["edge"].add(
                hop.start,
                "",
                access_logs.kong(hop.system, address, hop.start, *self._kong_parts(hop, agent, ctx), hop.took),
            )

    def _kong_parts(self, hop: Hop, agent: str, ctx: Ctx | None) -> tuple[dict[str, object], dict[str, object]]:
        headers = {"user-agent": agent}
        if ctx:
            headers["traceparent"] = f"00-{ctx[0]}-{ctx[1]}-01"
        request = {
            "method": hop.method,
            "uri": hop.path,
            "size": hop.size,
            "headers": headers,
        }
        response_headers = {"content-type": "application/json"}
        if hop.retry_after:
            response_headers["retry-after"] = str(hop.retry_after)
        return request, {"status": hop.status, "size": 90 + hop.size // 3, "headers": response_headers}

    def flush(self, before: int) -> None:
        for name, windows in self.signals.items():
            for batch in windows.closed(before):
                self._write(name, batch)

    def _write(self, name: str, batch: list[tuple[int, str, str]]) -> None:
        if name in ("traces", "logs"):
            groups: dict[str, list[str]] = {}
            for _, system, text in batch:
                groups.setdefault(system, []).append(text)
            encode = otlp_json.trace_request if name == "traces" else otlp_json.logs_request
            self.files[name].write(encode(groups.items()) + "\n")
            self.summary.counts["spans" if name == "traces" else "logs"] += len(batch)
            return
        self.files[name].write("".join(text + "\n" for _, _, text in batch))
        self.summary.counts["events" if name == "events" else "access_lines"] += len(batch)


def schedule(rng: random.Random, plan: Plan) -> list[tuple[int, str]]:
    """When each order and inventory adjustment starts, over all days, in time order."""
    start = to_us(plan.start)
    starts: list[tuple[int, str]] = []
    for day in range(plan.days):
        midnight = start + day * DAY
        hours = rng.choices(range(24), weights=HOURLY_WEIGHTS, k=plan.orders_per_day)
        starts += [(midnight + h * HOUR + int(rng.random() * HOUR), "order") for h in hours]
        adjustments = max(1, plan.orders_per_day // INVENTORY_SHARE)
        starts += [(midnight + 6 * HOUR + int(rng.random() * 16 * HOUR), "inventory") for _ in range(adjustments)]
    return sorted(s for s in starts if s[0] < plan.end)


def generate(plan: Plan, out: Path) -> Summary:
    """Write the plan's days of traffic under ``out``; the same plan always writes the same bytes."""
    summary = Summary()
    files = _open(out)
    if plan.until is not None:
        files["in_flight"] = (out / IN_FLIGHT).open("w", encoding="utf-8", newline="\n")
    try:
        _run(plan, files, summary)
    finally:
        for handle in files.values():
            handle.close()
    return summary


def _open(out: Path) -> dict[str, IO[str]]:
    files = {}
    for name, relative in FILES.items():
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        files[name] = path.open("w", encoding="utf-8", newline="\n", buffering=1 << 20)
    return files


def _run(plan: Plan, files: dict[str, IO[str]], summary: Summary) -> None:
    rng = random.Random(plan.seed)
    end = plan.end
    emitter = FileEmitter(files, end, summary)
    network = Network(rng, plan.profile, emitter, end)
    for at, kind in schedule(rng, plan):
        emitter.flush(at)
        records = network.order(at) if kind == "order" else [network.inventory_sync(at)]
        _record_truth(files["truth"], records, summary)
        if "in_flight" in files:
            for record in records:
                if record.carried is not None:
                    files["in_flight"].write(json.dumps(record.carried, separators=(",", ":")) + "\n")
    emitter.flush(end + WINDOW)


def _record_truth(handle: IO[str], records: list[Record], summary: Summary) -> None:
    for record in records:
        handle.write(json.dumps(record.as_dict(), separators=(",", ":")) + "\n")
        kind = {"order": "orders", "return": "returns", "inventory_sync": "inventory_syncs"}[record.type]
        summary.counts[kind] += 1
        for fault in record.faults:
            if record.type == "order":
                summary.faults[fault["name"]] = summary.faults.get(fault["name"], 0) + 1


def observed_files(folder: Path) -> list[str]:
    """The files a generated folder holds that are to be ingested, in a fixed order: the ground truth
    and the orders left in flight are the simulator's own, not anything a system reported."""
    return [str(folder / FILES[name]) for name in OBSERVED if (folder / FILES[name]).is_file()]
