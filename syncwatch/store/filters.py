"""Which exceptions a person means: the queue's filter, shared by the Exceptions page and bulk jobs,
so a bulk action touches exactly what the page listed (every match, not only the visible page)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, or_, select

from syncwatch.model import ActionKind, ExceptionCategory, ExceptionStatus, SlaState, as_utc
from syncwatch.store.schema import exceptions, transaction_keys, transactions

e, t = exceptions.c, transactions.c
ACTIVE_EXCEPTION = ("open", "retrying")
SINGULAR = {
    "status": "statuses",
    "category": "categories",
    "system": "systems",
    "suggested_action": "suggested_actions",
    "partner": "partners",
    "channel": "channels",
    "sla_state": "sla_states",
}
CHOICES = {
    "statuses": tuple(ExceptionStatus),
    "categories": tuple(ExceptionCategory),
    "sla_states": tuple(SlaState),
    "suggested_actions": tuple(ActionKind),
}


@dataclass(frozen=True)
class QueueFilter:
    """Empty tuples and None mean any; ``assignee=""`` means unassigned."""

    statuses: tuple[str, ...] = ACTIVE_EXCEPTION
    categories: tuple[str, ...] = ()
    systems: tuple[str, ...] = ()
    suggested_actions: tuple[str, ...] = ()
    partners: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    sla_states: tuple[str, ...] = ()
    assignee: str | None = None
    opened_after: datetime | None = None
    opened_before: datetime | None = None
    key: str | None = None

    @classmethod
    def from_mapping(cls, given: Mapping[str, Any]) -> QueueFilter:
        """From JSON-friendly values (a bulk job's recorded filter, an API call): plural or singular
        names, one value or a list, ISO times. Raises ValueError naming the filters there are."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, value in given.items():
            field_name = SINGULAR.get(name, name)
            if field_name not in known:
                raise ValueError(f"unknown filter {name!r}; filter by ids or {', '.join(known)}")
            if isinstance(known[field_name].default, tuple):
                value = tuple(value) if isinstance(value, list | tuple | set) else (value,)
                _known_values(name, field_name, value)
            elif field_name.startswith("opened_") and isinstance(value, str):
                value = _moment(name, value)
            values[field_name] = value
        return cls(**values)

    def as_mapping(self) -> dict[str, Any]:
        """The filters that narrow anything, JSON-friendly (what a bulk job records)."""
        return {name: _json(value) for name, value in asdict(self).items() if value not in ((), None)}


def _known_values(name: str, field_name: str, values: tuple[str, ...]) -> None:
    """A misspelt category or status would match nothing and read as 'nothing to do': say so."""
    allowed = CHOICES.get(field_name)
    wrong = [v for v in values if allowed is not None and v not in allowed]
    if wrong:
        raise ValueError(f"no {name.replace('_', ' ')} {wrong[0]!r}; choose from {', '.join(allowed or ())}")


def _moment(name: str, text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{name.replace('_', ' ')} {text!r} is not a time like 2026-11-26 or 2026-11-26T09:00"
        ) from None
    return as_utc(moment)


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return list(value) if isinstance(value, tuple) else value


def conditions(f: QueueFilter) -> list[ColumnElement[bool]]:
    """WHERE clauses over exceptions joined to their transaction."""
    pairs = (
        (e.status, f.statuses),
        (e.category, f.categories),
        (e.system, f.systems),
        (e.suggested_action, f.suggested_actions),
        (t.channel, f.channels),
        (t.sla_state, f.sla_states),
    )
    where: list[ColumnElement[bool]] = [column.in_(values) for column, values in pairs if values]
    if f.partners:
        # A partner's exceptions: those of its orders, and its own failures on orders not yet its (the
        # release to it refused): a scope names the same two, and the filter opens on a person's scope.
        where.append(or_(t.partner.in_(f.partners), e.system.in_(f.partners)))
    if f.assignee == "":
        where.append(e.assignee.is_(None))
    elif f.assignee:
        where.append(e.assignee == f.assignee)
    if f.opened_after:
        where.append(e.opened_at >= f.opened_after)
    if f.opened_before:
        where.append(e.opened_at < f.opened_before)
    if f.key:
        where.append(e.transaction_id.in_(transactions_with_key(f.key.strip())))
    return where


def transactions_with_key(key: str) -> Select[Any]:
    """Transactions that carry ``key`` as any identity key, or are named by it; typed in lower case
    too ('po-451445', 'order:po-451445'), since the documents' ids are upper case and a transaction's
    type is lower case. Each form is an index lookup."""
    tk = transaction_keys.c
    kind, _, value = key.partition(":")
    forms = sorted({key, key.upper(), *([f"{kind.lower()}:{value.upper()}"] if value else [])})
    return select(tk.transaction_id).where(or_(tk.value.in_(forms), tk.transaction_id.in_(forms)))
