"""Named KPI queries: the database aggregates, Python only orders the few numbers it returns.

Stage times are read out of the transactions' stage timeline by position (stages keep their
config order), so a duration needs no join; percentiles are taken from those durations, which
are two timestamps per transaction in the requested window, never whole rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, String, and_, case, cast, exists, func, literal, select

from syncwatch.store.schema import exceptions, transactions

t = transactions.c
GROUPS = {"channel": t.channel, "partner": t.partner, None: literal("all")}
INFORMATIONAL = ("duplicate_notice",)


NO_CHANNEL = "channel not seen"
NO_PARTNER = "not released yet"
NO_GROUP = {"partner": NO_PARTNER, "channel": NO_CHANNEL}
"""What an order without one counts under (Operations and KPIs alike): no partner yet means the ERP has
not released it (one whose release to a partner failed is that partner's); no channel, that no
marketplace's own call about it was seen."""


def _group(by: str | None) -> Any:
    try:
        return func.coalesce(GROUPS[by], NO_GROUP.get(by or "", "unknown")).label("grp")
    except KeyError:
        raise ValueError(f"KPIs group by channel, partner or nothing, not {by!r}") from None


def stage_times(
    conn: Connection, process: str, first: int, last: int, start: datetime, end: datetime, by: str | None
) -> list[Any]:
    """(day, group, first stage time, last stage time) for transactions that reached both."""
    begin = t.stages[first]["reached_at"].as_string()
    finish = t.stages[last]["reached_at"].as_string()
    stmt = select(
        cast(func.substr(cast(t.started_at, String), 1, 10), String).label("day"),
        _group(by),
        begin.label("begin"),
        finish.label("finish"),
    ).where(and_(t.type == process, t.started_at >= start, t.started_at < end, begin.is_not(None), finish.is_not(None)))
    return list(conn.execute(stmt))


def outcome_counts(
    conn: Connection, start: datetime, end: datetime, by: str | None, process: str = "order"
) -> list[Any]:
    """Per day and group: transactions, those with a (non-informational) exception, completed,
    completed within their SLA (met), and breached (completed late, or open and already late)."""
    has_exception = exists().where(
        and_(exceptions.c.transaction_id == t.id, exceptions.c.category.not_in(INFORMATIONAL))
    )
    day = cast(func.substr(cast(t.started_at, String), 1, 10), String).label("day")
    group = _group(by)  # one expression for SELECT and GROUP BY: built twice, PostgreSQL saw two parameters
    stmt = (
        select(
            day,
            group,
            func.count().label("transactions"),
            func.sum(case((has_exception, 1), else_=0)).label("with_exception"),
            func.sum(case((t.status == "complete", 1), else_=0)).label("complete"),
            func.sum(case((and_(t.status == "complete", t.sla_state == "met"), 1), else_=0)).label("met"),
            func.sum(case((t.sla_state == "breached", 1), else_=0)).label("breached"),
        )
        .where(and_(t.type == process, t.started_at >= start, t.started_at < end))
        .group_by(day, group)
    )
    return list(conn.execute(stmt))


def partner_firsts(conn: Connection) -> list[Any]:
    """Per partner: first transaction seen, and the first one completed within its SLA."""
    ok = and_(t.status == "complete", t.sla_state == "met")
    stmt = (
        select(
            t.partner,
            func.min(t.started_at).label("first_seen"),
            func.min(case((ok, t.last_seen_at))).label("first_success"),
            func.count().label("transactions"),
        )
        .where(t.partner.is_not(None))
        .group_by(t.partner)
        .order_by(t.partner)
    )
    return list(conn.execute(stmt))


def history_start(conn: Connection) -> datetime | None:
    """When the oldest transaction syncwatch keeps started: where its history begins."""
    return conn.execute(select(func.min(t.started_at))).scalar_one()


def cohort(conn: Connection, process: str, start: datetime, end: datetime) -> list[Any]:
    """(status, SLA state, stage timeline as text, when its first exception needing a person
    opened) of each transaction of ``process`` started in [start, end): what a KPI needs to tell
    how the cohort stood at an earlier moment."""
    first_exception = (
        select(func.min(exceptions.c.opened_at))
        .where(and_(exceptions.c.transaction_id == t.id, exceptions.c.category.not_in(INFORMATIONAL)))
        .scalar_subquery()
    )
    stmt = select(t.status, t.sla_state, cast(t.stages, String), first_exception.label("first_exception")).where(
        and_(t.type == process, t.started_at >= start, t.started_at < end)
    )
    return list(conn.execute(stmt))
