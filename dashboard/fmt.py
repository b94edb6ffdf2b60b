"""Formatting shared by the pages: time left, ages, labels a person reads at a glance."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from syncwatch.model import stage_label
from syncwatch.store.queries import NO_PARTNER

SLA_COLORS = {"breached": "#d62728", "at_risk": "#ff7f0e", "on_track": "#2ca02c", "met": "#1f77b4"}
SLA_ORDER = ["breached", "at_risk", "on_track", "met"]
SLA_LABELS = {"breached": "Breached", "at_risk": "At risk", "on_track": "On track", "met": "Met"}


def duration(delta: timedelta) -> str:
    """'3 d 4 h', '2 h 05 m', '12 m', '< 1 m' — the two largest units are enough to act on."""
    seconds = int(abs(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} m"
    return f"{minutes} m" if minutes else "< 1 m"


def time_left(due: datetime | None, now: datetime) -> str:
    """'40 m left' or 'late by 2 h 10 m'; blank when nothing is due."""
    if due is None or pd.isna(due):
        return ""
    delta = due - now
    return f"{duration(delta)} left" if delta >= timedelta(0) else f"late by {duration(delta)}"


def _missed_before(state: str | None, due: datetime | None, now: datetime) -> bool:
    """A breach whose late stage is behind the order (no stage is overdue now): what is due next is on time."""
    return state == "breached" and (due is None or pd.isna(due) or due >= now)


def sla_time(state: str | None, due: datetime | None, now: datetime) -> str:
    """``time_left``, except that a breach already behind the order reads 'next stage due in 1 d 4 h',
    not '1 d 4 h left' beside 'Breached'."""
    if _missed_before(state, due, now):
        return "" if due is None or pd.isna(due) else f"next stage due in {duration(due - now)}"
    return time_left(due, now)


def fault_text(state: str | None, stage: str | None, due: datetime | None, now: datetime) -> str | None:
    """Where the SLA stands: 'late at shipped' (overdue now), 'released was late' (done, but late),
    'at risk at shipped'."""
    if not stage:
        return None
    label = stage_label(stage)
    if state == "at_risk":
        return f"at risk at {label}"
    return f"{label} was late" if _missed_before(state, due, now) else f"late at {label}"


def age(since: datetime | None, now: datetime) -> str:
    if since is None or pd.isna(since):
        return ""
    return duration(now - since)


def when(moment: datetime | None) -> str:
    if moment is None or pd.isna(moment):
        return ""
    return pd.Timestamp(moment).strftime("%a %d %b %H:%M UTC")


def money(value: str | None) -> str:
    if value in (None, "") or pd.isna(value):
        return ""
    try:
        return f"${float(value):,.2f}"
    except ValueError:
        return str(value)


SHIPPED = "shipped"  # the order stage whose time the marketplace's promised ship-by date is about


def promise(stages: list[dict] | None, promised: datetime | None, now: datetime) -> str:
    """Whether the ship-by date promised to the customer is kept, apart from the SLA state: an order
    may be breached on an internal step (invoiced late) while it shipped days before its promise."""
    if promised is None or pd.isna(promised):
        return ""
    promised = _utc(promised)
    shipped = next((s.get("reached_at") for s in stages or [] if s.get("name") == SHIPPED), None)
    if shipped:
        at = _utc(shipped)
        kept = "kept" if at <= promised else f"missed by {duration(at - promised)}"
        return f"shipped {when(at)}, promised by {when(promised)}: {kept}"
    if now > promised:
        return f"not shipped, promised by {when(promised)}: missed by {duration(now - promised)}"
    return f"not shipped yet, promised by {when(promised)}: {duration(promised - now)} left"


def _utc(value: object) -> datetime:
    moment = pd.Timestamp(value)
    return (moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")).to_pydatetime()


def category_label(category: str | None) -> str:
    """'dead lettered', not dead_lettered: the filter keeps the stored name, people read this."""
    return (category or "").replace("_", " ")


def sla_label(state: str | None) -> str:
    return SLA_LABELS.get(state or "", state or "")


def no_partner(transaction_id: str) -> str:
    """What an empty partner says: an order not yet handed to a warehouse; other processes have none."""
    return NO_PARTNER if transaction_id.startswith("order:") else "—"
