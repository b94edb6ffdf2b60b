"""KPIs for the dashboard and for export: importable functions over the store's named queries.

Order cycle time (captured → confirmed), shipment-confirmation lag (shipped → confirmed) and
inventory latency (adjusted → listings updated) are durations between two stages; exception
rate and SLA attainment are shares; partner onboarding is first seen → first order completed
within its SLA. All by day or ISO week, and by channel, partner or overall.

SLA attainment counts every order whose SLA is decided: completed within it (met), or breached,
whether completed late or still open and already late. Counting completed orders alone would
leave out exactly the late ones still stuck, and read best on the worst days.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from correlator.processes import Process, compile_processes
from syncwatch.config import Config
from syncwatch.model import as_utc
from syncwatch.store import Store
from syncwatch.store import kpis as q


@dataclass(frozen=True, slots=True)
class Duration:
    """A KPI measured as the time between two stages of one process."""

    name: str
    label: str
    process: str
    begin: str
    end: str
    unit_s: float

    def column(self, stat: str) -> str:
        unit = {3600: "h", 60: "min"}.get(int(self.unit_s), "s")
        return f"{self.name}_{stat}_{unit}"


DURATIONS = (
    Duration("cycle_time", "Order cycle time", "order", "captured", "confirmed", 3600),
    Duration("confirmation_lag", "Shipment-confirmation lag", "order", "shipped", "confirmed", 60),
    Duration("inventory_latency", "Inventory latency", "inventory_sync", "adjusted", "listings_updated", 60),
)


def kpi_table(
    store: Store, config: Config, start: datetime, end: datetime, *, grain: str = "day", by: str | None = None
) -> pd.DataFrame:
    """One row per period (and group): volumes, shares and duration percentiles. Groups are the
    orders' channels or partners, so a duration of another process (inventory latency) is only
    overall: an inventory sync's first system is a warehouse, which is no sales channel."""
    processes = {p.name: p for p in compile_processes(config)}
    durations = [d for d in DURATIONS if by is None or d.process == "order"]
    with store.engine.connect() as conn:
        counts = pd.DataFrame(q.outcome_counts(conn, start, end, by))
        frames = [_durations(conn, processes, d, start, end, by) for d in durations]
    table = _shares(counts, grain)
    for duration, frame in zip(durations, frames, strict=True):
        table = table.merge(_percentiles(frame, duration, grain), on=["period", "group"], how="outer")
    return table.sort_values(["period", "group"]).reset_index(drop=True)


def _durations(
    conn,
    processes: dict[str, Process],
    d: Duration,
    start: datetime,
    end: datetime,  # type: ignore[no-untyped-def]
    by: str | None,
) -> pd.DataFrame:
    names = [s.name for s in processes[d.process].stages] if d.process in processes else []
    if d.begin not in names or d.end not in names:
        return pd.DataFrame(columns=["day", "grp", "seconds"])
    rows = q.stage_times(conn, d.process, names.index(d.begin), names.index(d.end), start, end, by)
    frame = pd.DataFrame(rows, columns=["day", "grp", "begin", "finish"])
    seconds = (
        pd.to_datetime(frame["finish"], utc=True, format="ISO8601")
        - pd.to_datetime(frame["begin"], utc=True, format="ISO8601")
    ).dt.total_seconds()
    return frame.assign(seconds=seconds)[["day", "grp", "seconds"]]


def periods(days: pd.Series, grain: str) -> pd.Series:
    """The period each YYYY-MM-DD day falls in: itself, or its week's Monday."""
    dates = pd.to_datetime(days, format="%Y-%m-%d")
    if grain == "week":
        return (dates - pd.to_timedelta(dates.dt.day_of_week, unit="D")).dt.strftime("%Y-%m-%d")
    if grain == "day":
        return dates.dt.strftime("%Y-%m-%d")
    raise ValueError(f"KPIs are by day or week, not {grain!r}")


def _shares(counts: pd.DataFrame, grain: str) -> pd.DataFrame:
    columns = ["transactions", "with_exception", "complete", "met", "breached"]
    if counts.empty:
        return pd.DataFrame(columns=["period", "group", *columns, "exception_rate", "sla_attainment"])
    counts = counts.assign(period=periods(counts["day"], grain), group=counts["grp"])
    table = counts.groupby(["period", "group"], as_index=False)[columns].sum()
    table["exception_rate"] = table["with_exception"] / table["transactions"]
    decided = table["met"] + table["breached"]
    table["sla_attainment"] = (table["met"] / decided).where(decided > 0)
    return table


def _percentiles(frame: pd.DataFrame, d: Duration, grain: str) -> pd.DataFrame:
    cols = [d.column("p50"), d.column("p90")]
    if frame.empty:
        return pd.DataFrame(columns=["period", "group", *cols])
    frame = frame.assign(period=periods(frame["day"], grain), group=frame["grp"], value=frame["seconds"] / d.unit_s)
    grouped = frame.groupby(["period", "group"])["value"]
    return pd.DataFrame({cols[0]: grouped.quantile(0.5), cols[1]: grouped.quantile(0.9)}).reset_index()


def as_it_stood(
    store: Store, config: Config, start: datetime, end: datetime, as_of: datetime
) -> dict[str, float | None]:
    """The headline KPIs of the orders (and inventory syncs) started in [start, end), as they
    stood at ``as_of``, keyed as ``kpi_table``'s columns. Orders take days to finish: last week's
    same days read as they stand now hold finished orders where this week's hold young ones, and
    a worse week could read as a better one. A stage counts as reached, an order as decided and
    an exception as opened only if that had happened by ``as_of``."""
    processes = {p.name: p for p in compile_processes(config)}
    cohorts: dict[str, list[_Timeline]] = {}
    with store.engine.connect() as conn:
        for name in {d.process for d in DURATIONS} | {"order"}:
            cohorts[name] = [_timeline(row, as_of) for row in q.cohort(conn, name, start, end)]
    orders = cohorts["order"]
    met = sum(1 for o in orders if o.met)
    breached = sum(1 for o in orders if o.breached)
    figures: dict[str, float | None] = {
        "exception_rate": sum(1 for o in orders if o.with_exception) / len(orders) if orders else None,
        "sla_attainment": met / (met + breached) if met + breached else None,
        "transactions": len(orders),  # what each share is of, as kpi_table names them
        "decided": met + breached,
    }
    for d in DURATIONS:
        names = [s.name for s in processes[d.process].stages] if d.process in processes else []
        spans = [t.seconds(d.begin, d.end) for t in cohorts[d.process]] if d.begin in names and d.end in names else []
        values = pd.Series([s / d.unit_s for s in spans if s is not None], dtype=float)
        for stat, share in (("p50", 0.5), ("p90", 0.9)):
            figures[d.column(stat)] = float(values.quantile(share)) if len(values) else None
    return figures


@dataclass(frozen=True, slots=True)
class _Timeline:
    """One transaction as it stood at a moment: the stages reached by then, and what was decided."""

    reached: dict[str, datetime]
    met: bool
    breached: bool
    with_exception: bool

    def seconds(self, begin: str, end: str) -> float | None:
        if begin in self.reached and end in self.reached:
            return (self.reached[end] - self.reached[begin]).total_seconds()
        return None


def _timeline(row: tuple[str, str, str | None, datetime | None], as_of: datetime) -> _Timeline:
    """A stored transaction as it stood at ``as_of``. It had breached by then if a stage was due by
    then and not reached in time; it had met its SLA if it was complete by then and never breaches."""
    status, sla_state, stages_text, first_exception = row
    stages = json.loads(stages_text or "[]")
    reached = {s["name"]: t for s in stages if s.get("reached_at") and (t := _utc(s["reached_at"])) <= as_of}
    breaches = [due for s in stages if (due := _breached_at(s)) is not None]
    # A breach of lines outstanding past their date is on no stage: it counts from when it was stored.
    breached = sla_state == "breached" and (not breaches or min(breaches) <= as_of)
    complete = status == "complete" and bool(stages) and stages[-1]["name"] in reached
    met = complete and sla_state == "met"
    return _Timeline(reached, met, breached, first_exception is not None and as_utc(first_exception) <= as_of)


def _breached_at(stage: dict[str, Any]) -> datetime | None:
    """When a stage became late: its due time, if it was reached after it or not at all."""
    if not stage.get("due_at"):
        return None
    due = _utc(stage["due_at"])
    reached = stage.get("reached_at")
    return due if reached is None or _utc(reached) > due else None


def _utc(text: str) -> datetime:
    return as_utc(datetime.fromisoformat(text))


ALREADY_LIVE = pd.Timedelta(days=1)
"""A partner first seen this close to where the kept history begins was live before it."""


def partner_onboarding(store: Store) -> pd.DataFrame:
    """Per partner: first seen, first order completed within its SLA, and the days in between;
    ``before_history`` where it was already live when the kept history begins, whose days would be
    the history's first hours, not an onboarding (left empty)."""
    with store.engine.connect() as conn:
        frame = pd.DataFrame(q.partner_firsts(conn), columns=["partner", "first_seen", "first_success", "transactions"])
        began = q.history_start(conn)
    first_seen = pd.to_datetime(frame["first_seen"], utc=True)
    first_success = pd.to_datetime(frame["first_success"], utc=True)
    before = pd.Series(False, index=frame.index)
    if began is not None:
        before = first_seen - pd.Timestamp(as_utc(began)) < ALREADY_LIVE
    days = ((first_success - first_seen).dt.total_seconds() / 86400).mask(before)
    return frame.assign(
        first_seen=first_seen, first_success=first_success, days_to_first_success=days, before_history=before
    )
