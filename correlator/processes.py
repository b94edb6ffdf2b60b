"""Process definitions compiled from config: which keys make a transaction, which observations
reach which stage, and each stage's SLA.

Every identity key type belongs to one process; a transaction of that process is a connected
set of its keys (and trace ids) holding at most one value of each ``starts_with`` type.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from functools import cache
from operator import attrgetter
from typing import Any

import orjson

from syncwatch.config import Config
from syncwatch.config.schema import Calendar, LinesDef, StageDef, StageMatch
from syncwatch.model import as_utc

log = logging.getLogger(__name__)


class Member:
    """The facts about an observation that stages, SLAs and exceptions are computed from.

    Attributes stay JSON text until something asks for them: most members are only matched
    against stages by system and operation, and decoding every attribute map dominated a pass.
    A pass keeps the text only where something may read it (see ``correlator.members``), so a
    whole backlog of members fits in memory; likewise the payload (event data) only where it
    ships lines. ``nodes`` are its identity keys, then its trace id.
    """

    __slots__ = (
        "_attributes",
        "attributes_json",
        "duplicates",
        "error_message",
        "id",
        "kind",
        "nodes",
        "operation",
        "outcome",
        "payload",
        "start",
        "status_code",
        "system",
    )

    def __init__(
        self,
        id: int,
        kind: str,
        system: str,
        operation: str,
        start: datetime,
        outcome: str,
        status_code: int | None,
        error_message: str | None,
        duplicates: int,
        attributes_json: str | dict | None = None,
        nodes: tuple[tuple[str, str], ...] = (),
        payload: bytes | None = None,
    ) -> None:
        self.id, self.kind, self.system, self.operation = id, kind, system, operation
        self.start, self.outcome, self.status_code, self.error_message = start, outcome, status_code, error_message
        self.duplicates, self.attributes_json, self.nodes = duplicates, attributes_json, nodes
        self.payload = payload
        self._attributes: dict | None = None

    @property
    def attributes(self) -> dict:
        if self._attributes is None:
            raw = self.attributes_json
            self._attributes = _decoded(raw) if isinstance(raw, str) else dict(raw or {})
        return self._attributes

    def attribute(self, name: str) -> Any:
        """One attribute's value (None where absent); text that cannot hold it is not decoded."""
        raw = self.attributes_json
        if raw is None or (isinstance(raw, str) and _quoted(name) not in raw):
            return None
        return self.attributes.get(name)

    @property
    def subject(self) -> str:
        """What an event is about: its identity key values, for spotting the same notice twice."""
        return ",".join(sorted(value for key_type, value in self.nodes if key_type != "trace"))


_quoted = cache(json.dumps)  # an attribute name as JSON text writes it
_BY_ID, _BY_START = attrgetter("id"), attrgetter("start")


def in_time_order(members: Iterable[Member]) -> list[Member]:
    """``members`` by start, then by id: two stable sorts by one attribute each, which make no key
    tuples (a pass orders 1.4M members; a (start, id) key took two thirds longer)."""
    ordered = sorted(members, key=_BY_ID)
    ordered.sort(key=_BY_START)
    return ordered


def _decoded(text: str) -> dict:
    """Attribute text as stored: orjson reads it several times faster; the standard library what
    orjson refuses (integers beyond 64 bits, which the writer stores through it)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def first_attribute(members: Sequence[Member], *names: str | None) -> Any:
    """The first value any of ``members`` (in order) carries under one of ``names``, else None."""
    wanted = [(name, _quoted(name)) for name in names if name]
    for member in members:  # ``Member.attribute``, inline: this runs for each of 100k+ transactions
        raw = member.attributes_json
        if raw is None:
            continue
        text = isinstance(raw, str)
        for name, quoted in wanted:
            if text and quoted not in raw:
                continue
            value = member.attributes.get(name)
            if value is not None:
                return value
    return None


def time_attribute(members: Sequence[Member], name: str | None) -> datetime | None:
    """``first_attribute`` read as an ISO-8601 time in UTC; a value that is not one is logged and ignored."""
    value = first_attribute(members, name)
    try:
        return as_utc(datetime.fromisoformat(str(value))) if value is not None else None
    except ValueError:
        log.warning("ignoring %s=%r: not an ISO-8601 time", name, value)
        return None


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    matches: tuple[StageMatch, ...]
    sla: timedelta | None
    after: str | None
    deadline_attribute: str | None

    def reached_by(self, member: Member) -> bool:
        return any(_matches(rule, member) for rule in self.matches)

    @property
    def systems(self) -> tuple[str, ...]:
        """The systems (names or patterns) whose observations reach this stage: what an overdue stage
        waits on; none where a rule takes any system."""
        found = tuple(dict.fromkeys(rule.system for rule in self.matches))
        return () if "*" in found else found


def _matches(rule: StageMatch, member: Member) -> bool:
    return (
        (rule.kind is None or rule.kind == member.kind)
        and (rule.outcome is None or rule.outcome == member.outcome)
        and fnmatchcase(member.system, rule.system)
        and fnmatchcase(member.operation, _as_glob(rule.operation))
    )


def _as_glob(operation: str) -> str:
    """A route template matches its own name and any concrete path: {erp_order} becomes *."""
    return _PLACEHOLDER.sub("*", operation)


_PLACEHOLDER = re.compile(r"\{[^}]*\}")


@dataclass(frozen=True, slots=True)
class Process:
    name: str
    roots: tuple[str, ...]
    keys: frozenset[str]
    stages: tuple[Stage, ...]
    calendar: Calendar | None
    partner_stage: str | None = None
    context: dict[str, list[str]] = field(default_factory=dict)
    lines: LinesDef | None = None
    ends: tuple[str, ...] = ()
    """The last stage of each path, all of which a finished transaction reached: invoiced runs ``after``
    shipped, beside confirmed, so an order invoiced before its confirmation came is not finished."""
    handed_over: int | None = field(init=False, default=None, repr=False)
    """The index of the stage after ``partner_stage``, which the partner owes (None: none follows it);
    worked out from the stages, also by ``dataclasses.replace``, so it cannot go stale."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "handed_over", _after(self.partner_stage, [s.name for s in self.stages]))

    @property
    def lines_stage(self) -> Stage | None:
        """The stage whose observations ship lines, where the process tracks lines."""
        return next((s for s in self.stages if s.name == self.lines.stage), None) if self.lines else None

    @property
    def attribute_names(self) -> set[str]:
        """Every attribute the process reads: deadlines, business context, line counts."""
        names = {s.deadline_attribute for s in self.stages if s.deadline_attribute}
        names.update(a for attributes in self.context.values() for a in attributes)
        if self.lines:
            found = (self.lines.count_attribute, self.lines.backordered_attribute, self.lines.backorder_due_attribute)
            names.update(a for a in found if a)
        return names


def compile_processes(config: Config) -> tuple[Process, ...]:
    file = config.file
    return tuple(
        Process(
            name=name,
            roots=tuple(p.starts_with),
            keys=frozenset([*p.starts_with, *p.keys]),
            stages=tuple(Stage(s.name, tuple(s.match), s.sla, s.after, s.deadline_attribute) for s in p.stages),
            calendar=file.calendars[p.calendar] if p.calendar else None,
            partner_stage=p.partner_stage,
            context=p.context,
            lines=p.lines,
            ends=_ends(p.stages),
        )
        for name, p in file.processes.items()
    )


def _after(stage: str | None, names: list[str]) -> int | None:
    """The index of the stage listed after ``stage``, if there is one."""
    return names.index(stage) + 1 if stage in names and names.index(stage) + 1 < len(names) else None


def _ends(stages: Sequence[StageDef]) -> tuple[str, ...]:
    """The stages no other stage follows: each follows its ``after``, else the one listed before it."""
    followed = {s.after or (stages[i - 1].name if i else None) for i, s in enumerate(stages)}
    return tuple(s.name for s in stages if s.name not in followed)
