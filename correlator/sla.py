"""SLA evaluation: a pure function of the stages reached, the deadlines carried, and ``now``.

A stage's budget runs from the stage before it (or from ``after``). Budgets of a day or more
count business days in the process calendar: an order captured after the cut-off, or on a
non-working day, starts counting on the next business day, and is due at the end of its last
business day. An absolute deadline carried on the order (the marketplace's promised ship-by)
is the contract, so where the order carries one it replaces the relative budget. A partner
that took the order late (rerouted to it past the promise) still has the stage's own budget
from then before the lateness is its own (``Handover``). The result also says when the state,
or whose lateness it is, would next change if nothing arrives, so the scheduled re-evaluation
only touches transactions whose time has come.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import TYPE_CHECKING, NamedTuple
from zoneinfo import ZoneInfo

import orjson

from correlator.processes import Process
from syncwatch.config.schema import Calendar
from syncwatch.model import SlaState, as_utc

if TYPE_CHECKING:
    from correlator.lines import LineCheck

DAY = timedelta(days=1)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class StageState(NamedTuple):  # a tuple, not a frozen dataclass: seven per transaction, cheaply made
    name: str
    reached_at: datetime | None
    due_at: datetime | None
    state: SlaState | None  # None: not yet measurable (the stage before it is not reached)


def stages_json(stages: Iterable[StageState]) -> str:
    """The stage timeline as the transactions table stores it, [{name, reached_at, due_at,
    sla_state}] as JSON text: orjson writes a backlog's 100k+ timelines six times faster."""
    return orjson.dumps(
        [{"name": s.name, "reached_at": s.reached_at, "due_at": s.due_at, "sla_state": s.state} for s in stages]
    ).decode()


class Handover(NamedTuple):
    """The stage after the hand-over to a partner (``Process.partner_stage``), as that partner owes
    it: by its own budget from ``received_at``, where that ends after the stage is due. The order is
    late either way; the partner is late only by ``due_at``. Without a budget of its own the stage
    gives none (``due_at`` is the stage's), and the partner took it after it was due."""

    stage: str
    received_at: datetime
    due_at: datetime
    late: bool  # the partner has not reached the stage by ``due_at``, or reached it after


@dataclass(frozen=True, slots=True)
class SlaResult:
    stages: tuple[StageState, ...]
    state: SlaState
    complete: bool
    current_stage: str | None
    stage_at_fault: str | None
    due_at: datetime | None
    check_at: datetime | None
    lines: LineCheck | None = None  # where the process tracks lines and the order shipped in parts
    handover: Handover | None = None  # where the order reached its partner too late for the stage's due


def evaluate(
    process: Process, reached: dict[str, datetime], deadlines: dict[str, datetime], now: datetime, at_risk_share: float
) -> SlaResult:
    now = as_utc(now)
    states: list[StageState] = []
    checks: list[datetime] = []
    stages, calendar = process.stages, process.calendar
    latest = -1
    for index, stage in enumerate(stages):  # loops, not generators: this runs for every transaction
        if stage.name in reached:
            latest = index
    # A stage's budget starts at the nearest stage before it that was reached (or at ``after``);
    # one never observed but passed (a later stage, up to ``latest``, was reached) hands over.
    previous: datetime | None = None
    for index, stage in enumerate(stages):
        base = reached.get(stage.after) if stage.after else previous if index - 1 <= latest else None
        at = reached.get(stage.name)
        # A deadline carried on the order is the contract; else the stage's budget from its base.
        due = deadlines.get(stage.deadline_attribute) if stage.deadline_attribute else None
        if due is None and base is not None and stage.sla:
            due = add_budget(base, stage.sla, calendar)
        state, check = stage_state(at, base, due, now, at_risk_share)
        states.append(StageState(stage.name, at, due, state))
        if check:
            checks.append(check)
        if at is not None:
            previous = at
    handover = _handover(process, reached, states, now)
    if handover is not None and not handover.late and handover.stage not in reached:
        checks.append(handover.due_at)  # when its lateness becomes the partner's: looked at again then
    return _summarise(tuple(states), checks, all(name in reached for name in process.ends), handover)


def _handover(
    process: Process, reached: dict[str, datetime], states: list[StageState], now: datetime
) -> Handover | None:
    """The stage after the hand-over, where the partner received the order too late to meet its due
    (the promised ship-by) within the stage's own budget, or after it was due."""
    index = process.handed_over
    if index is None:
        return None
    received = reached.get(process.partner_stage or "")
    stage, due = process.stages[index], states[index].due_at
    if received is None or due is None:
        return None
    own = add_budget(received, stage.sla, process.calendar) if stage.sla else due
    if own <= due and received <= due:
        return None
    at = reached.get(stage.name)
    return Handover(stage.name, received, own, at > own if at is not None else now >= own)


def stage_state(
    reached_at: datetime | None, base: datetime | None, due: datetime | None, now: datetime, share: float
) -> tuple[SlaState | None, datetime | None]:
    if reached_at is not None:
        return (SlaState.BREACHED if due is not None and reached_at > due else SlaState.MET), None
    if due is None:
        return None, None
    if now >= due:
        return SlaState.BREACHED, None
    at_risk_from = due - (due - base) * (1 - share) if base is not None else due
    if now >= at_risk_from:
        return SlaState.AT_RISK, due
    return SlaState.ON_TRACK, at_risk_from


def _summarise(
    states: tuple[StageState, ...], checks: list[datetime], complete: bool, handover: Handover | None = None
) -> SlaResult:
    reached: list[StageState] = []
    pending: list[StageState] = []
    breached: list[StageState] = []
    at_risk: list[StageState] = []
    for s in states:  # one loop, not four comprehensions: this runs for every transaction
        if s.reached_at is not None:
            reached.append(s)
        elif s.due_at is not None:
            pending.append(s)
        if s.state is SlaState.BREACHED:
            breached.append(s)
        elif s.state is SlaState.AT_RISK:
            at_risk.append(s)
    if complete:
        state = SlaState.BREACHED if breached else SlaState.MET
    else:
        state = SlaState.BREACHED if breached else SlaState.AT_RISK if at_risk else SlaState.ON_TRACK
    # The stage to act on: one overdue now, else one at risk now, else the first that finished late.
    overdue = [s for s in breached if s.reached_at is None]
    fault = (overdue or at_risk or breached or [None])[0]
    return SlaResult(
        stages=states,
        state=state,
        complete=complete,
        current_stage=max(reached, key=lambda s: s.reached_at).name if reached else None,  # type: ignore[arg-type,return-value]
        stage_at_fault=fault.name if fault else None,
        due_at=pending[0].due_at if pending and not complete else None,
        check_at=min(checks) if checks and not complete else None,
        handover=handover,
    )


def add_budget(start: datetime, budget: timedelta, calendar: Calendar | None) -> datetime:
    """``start`` plus ``budget``; budgets of a day or more count business days after the cut-off."""
    if calendar is None or budget < DAY:
        return start + budget
    zone = ZoneInfo(calendar.timezone)
    local = as_utc(start).astimezone(zone)
    day, late = local.date(), local.time() > _cutoff(calendar.cutoff)
    # Every order of a day shares its due time: a pass asks this for each of 100k+ transactions.
    key = (id(calendar), day, late, budget)
    known = _DUE.get(key)
    if known is not None and known[0] is calendar:
        return known[1]
    if late or not _working(day, calendar):
        day = _next_working(day, calendar)
    for _ in range(math.ceil(budget / DAY) - 1):
        day = _next_working(day, calendar)
    due = as_utc(datetime.combine(day + DAY, time(0), zone))
    if len(_DUE) >= _DUE_LIMIT:
        _DUE.clear()
    _DUE[key] = (calendar, due)  # the calendar itself, so an id reused by a reloaded config is not taken for it
    return due


_DUE: dict[tuple[int, date, bool, timedelta], tuple[Calendar, datetime]] = {}
_DUE_LIMIT = 10_000


@cache
def _cutoff(text: str) -> time:
    return time.fromisoformat(text)


def _working(day: date, calendar: Calendar) -> bool:
    return WEEKDAYS[day.weekday()] in calendar.workdays and day not in calendar.holidays


def _next_working(day: date, calendar: Calendar) -> date:
    day += DAY
    while not _working(day, calendar):
        day += DAY
    return day
