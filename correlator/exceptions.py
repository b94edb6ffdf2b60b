"""Exceptions derived from a transaction's observations and SLA state — a pure function.

One failing *step* (an operation, with the transaction's own ids replaced by their key type)
is one exception however many systems reported it (client span, server span, gateway log).
It resolves itself when a later observation shows the step succeeded; a dead-lettered message
resolves when the process moves on after it. A stage that is overdue with no failure to
explain it is ``stuck``; a notice delivered twice is an informational ``duplicate_notice``.
The id hashes the transaction's identity and the step, so re-derivation finds the same row.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from correlator.lines import LineCheck
from correlator.processes import Member
from correlator.sla import Handover, SlaResult
from syncwatch.model import (
    PARTNER_CALLED,
    ActionKind,
    ExceptionCategory,
    ExceptionStatus,
    SlaState,
    called_system,
    stage_label,
)
from syncwatch.redact import mask_emails

Cat = ExceptionCategory
ANSWERED = re.compile(r"^[\w.-]+ answered \d{3}: ")
"""How syncwatch's own client words a refusal ('erp answered 422: …'); the summary says it once."""
SUGGESTED = {
    Cat.VALIDATION: ActionKind.RETRY,
    Cat.PARTNER_UNAVAILABLE: ActionKind.REROUTE,
    Cat.THROTTLED: ActionKind.RETRY,
    Cat.TIMEOUT: ActionKind.RETRY,
    Cat.STUCK: None,  # nothing failed, so nothing to send again: ask the partner (the runbook says how)
    Cat.DUPLICATE_NOTICE: ActionKind.RESOLVE,
    Cat.DEAD_LETTERED: ActionKind.REPLAY,
}


@dataclass(frozen=True, slots=True)
class Draft:
    """An exception as the correlator sees it; the pass merges it with the stored lifecycle."""

    id: str
    category: ExceptionCategory
    status: ExceptionStatus
    system: str
    endpoint: str
    stage: str | None
    summary: str
    opened_at: datetime
    last_seen_at: datetime
    attempts: int
    observation_id: int
    resolved_by: Member | None = None
    suggested_action: ActionKind | None = None
    context: dict[str, Any] = field(default_factory=dict)
    actionable: bool = True  # False: no request to send again or move, a person follows it up


def derive(
    identity: str,
    members: Sequence[Member],
    sla: SlaResult,
    keys: Iterable[tuple[str, str]],
    context: dict[str, Any],
    hosts: dict[str, str] | None = None,
    partner_stage: str | None = None,
    owners: dict[str, tuple[str, ...]] | None = None,
) -> list[Draft]:
    """Every exception the transaction's observations show; ``hosts`` maps the host names a
    caller's span shows for a partner to that partner, so a failed call blames the callee. Past
    ``partner_stage`` the order is with its partner (the context's), so the next stage overdue is theirs;
    ``owners`` names the systems other stages wait on (see ``Stage.systems``). ``members`` come in
    (start, id) order (``processes.in_time_order``), as ``transaction_row`` takes them."""
    errors = [m for m in members if m.outcome == "error"]
    by_value = {value: key_type for key_type, value in keys}
    # Steps matter only where something failed: most transactions need none.
    step = {m.id: step_of(m.operation, by_value) for m in members} if errors else {}
    failures: dict[str, list[Member]] = defaultdict(list)
    # Error log lines are evidence for a failed call, not a step of their own, unless they are all there is.
    for member in [m for m in errors if m.kind != "log"] or errors:
        failures[step[member.id]].append(member)
    # syncwatch's own calls (a retry, the lookup before one, a reroute's cancel) are attempts at a
    # step that failed before, never a step of their own: a failed lookup would otherwise open an
    # exception of its own, which the retry policy would then retry. Its action's outcome tells it.
    failures = {name: failed for name, failed in failures.items() if not all(_ours(m) for m in failed)}
    drafts = [_failure(identity, name, failed, members, step, sla, hosts or {}) for name, failed in failures.items()]
    failed_at = [(d.stage, d.opened_at) for d in drafts]
    drafts += _duplicates(identity, members, sla)
    if not any(d.status is ExceptionStatus.OPEN for d in drafts):
        held = _held_by(sla, partner_stage, context.get("partner"))
        drafts += _stuck(identity, sla, members, held, owners or {}, failed_at)
        drafts += _short_shipped(identity, sla.lines)
    return [_with_context(d, context) for d in drafts]


def _ours(member: Member) -> bool:
    return bool(member.attributes.get(PARTNER_CALLED))


REFUSALS = ("rejected", "refused", "declined", "invalid")


def category_of(member: Member) -> ExceptionCategory:
    text = f"{member.operation} {member.error_message or ''} {member.attributes.get('error.type', '')}".lower()
    status = member.status_code or 0
    if "dead_letter" in text or "dead-letter" in text:
        return Cat.DEAD_LETTERED
    if status == 429:
        return Cat.THROTTLED
    if status == 504 or "timeout" in text or "timed out" in text:
        return Cat.TIMEOUT
    if 400 <= status < 500:
        return Cat.VALIDATION
    if not status and member.kind != "span" and any(word in text for word in REFUSALS):
        return Cat.VALIDATION  # a partner's notice that it refused the order: it answered, so it is not down
    return Cat.PARTNER_UNAVAILABLE


def step_of(operation: str, values: dict[str, str]) -> str:
    """The operation with this transaction's ids replaced by their key type: one step, any order."""
    for value, key_type in values.items():
        if value in operation:
            operation = operation.replace(value, "{" + key_type + "}")
    return operation


def _failure(
    identity: str,
    step: str,
    failures: list[Member],
    ordered: Sequence[Member],
    step_of_id: dict[int, str],
    sla: SlaResult,
    hosts: dict[str, str],
) -> Draft:
    first, last = failures[0], failures[-1]
    # The last answer a partner gave names the problem; a later attempt that got no answer at all
    # (refused, reset) is told in the summary, so category and summary never tell two stories.
    culprit = next((m for m in reversed(failures) if m.status_code and m.kind == "span"), last)
    category = category_of(culprit)
    resolver = _resolver(category, step, last, ordered, step_of_id, sla)
    attempts = _attempts(failures)
    failing = _failing_system(culprit, hosts)
    return Draft(
        id=_id(identity, "step", step),
        category=category,
        status=ExceptionStatus.RESOLVED if resolver else ExceptionStatus.OPEN,
        system=failing,
        endpoint=step,
        stage=_stage_at(sla, first.start),
        summary=_summary(culprit, attempts, last, failing),
        opened_at=first.start,
        last_seen_at=last.start,
        attempts=attempts,
        observation_id=last.id,
        resolved_by=resolver,
    )


def _attempts(failures: list[Member]) -> int:
    """Calls, not reports of them: the caller's client span and the callee's server span both
    report one call, so it is the larger side's count (a call that never reached the callee has
    its client span alone)."""
    clients = sum(1 for m in failures if m.attributes.get("span.kind") == "client")
    return max(clients, len(failures) - clients)


def _failing_system(member: Member, hosts: dict[str, str]) -> str:
    """The system that failed: the callee a client span names (syncwatch's own calls, a retry or a
    lookup, name their partner), else the system that reported it."""
    return called_system(member.attributes, hosts) or member.system


def _resolver(
    category: ExceptionCategory,
    step: str,
    last: Member,
    ordered: Sequence[Member],
    step_of_id: dict[int, str],
    sla: SlaResult,
) -> Member | None:
    later = [m for m in ordered if _surely_after(m, last) and m.outcome == "ok"]
    if category is Cat.DEAD_LETTERED:
        moved_on = {s.reached_at for s in sla.stages if s.reached_at}
        return next((m for m in later if m.start in moved_on), None)
    return next((m for m in later if step_of_id[m.id] == step), None)


def _surely_after(member: Member, failure: Member) -> bool:
    """Whether ``member`` happened after ``failure``, at the precision the failure's time was told:
    an event stamped to the millisecond (most are) or the second happened somewhere within it, so
    the 3PL's span 0.4 ms into that millisecond may well be earlier and must not resolve it."""
    micro = failure.start.microsecond
    grain = timedelta(seconds=1) if micro == 0 else timedelta(milliseconds=1) if micro % 1000 == 0 else None
    if grain is None:
        return (member.start, member.id) > (failure.start, failure.id)
    return member.start >= failure.start + grain


def _duplicates(identity: str, ordered: Sequence[Member], sla: SlaResult) -> list[Draft]:
    notices: dict[tuple[str, str], list[Member]] = defaultdict(list)
    for member in ordered:
        if member.kind == "event":
            notices[(member.operation, member.subject)].append(member)
    drafts = []
    for (operation, subject), group in notices.items():
        repeats = sum(m.duplicates for m in group) + len(group) - 1
        if repeats > 0:
            stage = next((s.name for s in sla.stages if s.reached_at == group[0].start), None)
            drafts.append(_duplicate_draft(identity, operation, subject, group, repeats, stage))
    return drafts


def _duplicate_draft(
    identity: str, operation: str, subject: str, group: list[Member], repeats: int, stage: str | None
) -> Draft:
    """The notice sent again, at the stage the first one reached; opened when the second came (a
    delivery again under the same id is counted on the first, whose time is all there is)."""
    first = group[0]
    return Draft(
        id=_id(identity, "duplicate", operation, subject),
        category=Cat.DUPLICATE_NOTICE,
        status=ExceptionStatus.RESOLVED,
        system=first.system,
        endpoint=operation,
        stage=stage,
        summary=f"{first.system} sent {operation} for {subject or 'this order'} {repeats + 1} times; stored once.",
        opened_at=group[1].start if len(group) > 1 else first.start,
        last_seen_at=group[-1].start,
        attempts=repeats + 1,
        observation_id=first.id,
        resolved_by=first,
    )


def _held_by(sla: SlaResult, partner_stage: str | None, partner: Any) -> tuple[str, str] | None:
    """(the stage right after the hand-over, the partner who owes it), where the order was handed over."""
    names = [s.name for s in sla.stages]
    if not partner or partner_stage not in names or names.index(partner_stage) + 1 >= len(names):
        return None
    return names[names.index(partner_stage) + 1], str(partner)


def _stuck(
    identity: str,
    sla: SlaResult,
    ordered: Sequence[Member],
    held: tuple[str, str] | None,
    owners: dict[str, tuple[str, ...]],
    failed_at: list[tuple[str | None, datetime]],
) -> list[Draft]:
    """Stages overdue, or reached late where no failure at the stage before its due explains it: a
    3PL that was down made the release late, and its own exception says so; the alternate the order
    was rerouted to, which released it, was not late. A stage still overdue is stuck either way."""
    drafts = []
    for stage in sla.stages:
        if stage.state is not SlaState.BREACHED or stage.due_at is None:
            continue
        explained = any(name == stage.name and at <= stage.due_at for name, at in failed_at)
        if explained and stage.reached_at is not None:
            continue
        resolver = next((m for m in ordered if m.start == stage.reached_at), None) if stage.reached_at else None
        before = [m for m in ordered if m.start <= stage.due_at] or list(ordered[:1])
        last, opened = before[-1], stage.due_at
        if held and held[0] == stage.name:
            owner, where = held[1], f"the order is with {held[1]}"
            handover = sla.handover
            if handover is not None and handover.stage == stage.name:
                if not handover.late:
                    continue  # late for the customer, but its partner took it late and still has its own budget
                where, opened = f"{_took(owner, handover)}; {where}", max(handover.due_at, handover.received_at)
        elif (owner := _waited_on(owners.get(stage.name, ()), ordered)) and owner != last.system:
            where = f"waiting on {owner}; last seen at {last.system}"
        else:
            owner, where = last.system, f"last seen at {last.system}"
        drafts.append(_stuck_draft(identity, stage.name, (stage.due_at, opened), last, resolver, owner, where))
    return drafts


def _took(owner: str, handover: Handover) -> str:
    """When the partner an overdue stage is charged to took the order, and what time it had from then."""
    took = f"{owner} took the order {handover.received_at:%Y-%m-%d %H:%M} UTC"
    if handover.due_at > handover.received_at:
        return f"{took} and had until {handover.due_at:%Y-%m-%d %H:%M} UTC"
    return f"{took}, after it was due"


def _waited_on(systems: tuple[str, ...], ordered: Sequence[Member]) -> str | None:
    """The one system that would reach an overdue stage: of the systems its rules name, the one this
    order has seen (its marketplace, for ``marketplace-*``), else the one the rules name alone (the ERP)."""
    seen = {m.system for m in ordered if any(fnmatchcase(m.system, pattern) for pattern in systems)}
    named = [s for s in systems if not any(c in s for c in "*?[")]
    found = seen or set(named)
    return found.pop() if len(found) == 1 else None


def _stuck_draft(
    identity: str,
    stage: str,
    times: tuple[datetime, datetime],
    last: Member,
    resolver: Member | None,
    owner: str,
    where: str,
) -> Draft:
    """``times``: when the stage was due, and when it became ``owner``'s lateness (later, where
    ``owner`` took the order late)."""
    (due, opened), late = times, "arrived late" if resolver else "is overdue"
    return Draft(
        id=_id(identity, "stuck", stage),
        category=Cat.STUCK,
        status=ExceptionStatus.RESOLVED if resolver else ExceptionStatus.OPEN,
        system=owner,
        endpoint=stage,
        stage=stage,
        summary=f"Stage {stage_label(stage)} {late}: it was due {due:%Y-%m-%d %H:%M} UTC; {where}.",
        opened_at=opened,
        last_seen_at=resolver.start if resolver else opened,
        attempts=1,
        observation_id=last.id,
        resolved_by=resolver,
    )


def _short_shipped(identity: str, check: LineCheck | None) -> list[Draft]:
    """Lines still outstanding when they were due (or shipped after it): the order went out in
    part, and the rest is late — a backordered line past the date the ERP promised for it."""
    if check is None or check.state is not SlaState.BREACHED or check.due_at is None:
        return []
    lines, resolver = check.lines, check.completed_by
    shipped = lines.shipped
    waiting = [sku for sku in lines.backordered if sku not in shipped]
    last = lines.shipments[-1]
    if resolver is not None:
        summary = f"The last of {lines.ordered} lines shipped late: it was due {check.due_at:%Y-%m-%d %H:%M} UTC."
    else:
        held = f"; backordered {', '.join(waiting)}" if waiting else ""
        summary = (
            f"Shipped {len(shipped)} of {lines.ordered} lines{held}: the rest was due"
            f" {check.due_at:%Y-%m-%d %H:%M} UTC and has not shipped; ask {last.system} when it will."
        )
    return [
        Draft(
            id=_id(identity, "stuck", check.stage, "lines"),
            category=Cat.STUCK,
            status=ExceptionStatus.RESOLVED if resolver else ExceptionStatus.OPEN,
            system=last.system,
            endpoint=f"{check.stage} (all lines)",
            stage=check.stage,
            summary=summary,
            opened_at=check.due_at,
            last_seen_at=resolver.start if resolver else check.due_at,
            attempts=1,
            observation_id=last.member.id,
            resolved_by=resolver,
            actionable=False,  # part of the order shipped: nothing to send again, nothing whole to move
        )
    ]


def _stage_at(sla: SlaResult, when: datetime) -> str | None:
    """The first stage not yet reached at ``when``: the one the failure holds up."""
    return next((s.name for s in sla.stages if s.reached_at is None or s.reached_at > when), None)


def _summary(member: Member, attempts: int, last: Member, failing: str) -> str:
    """Told as the answer of the system that failed: a caller's view of a 3PL's 503 (or syncwatch's own
    retry) reads as the 3PL's answer, as the 3PL's own span would tell it."""
    status = f" {member.status_code}" if member.status_code else ""
    tries = f" ({attempts} attempts)" if attempts > 1 else ""
    since = ""
    if last.kind == "span" and last.start > member.start and not last.status_code:
        since = f"; the last attempt, {last.start:%Y-%m-%d %H:%M} UTC, got no answer: {_reason(last)}"
    return f"{failing} {_what(member)}{status}: {_reason(member)}{tries}{since}"


def _what(member: Member) -> str:
    """The call, or what an event says happened: 'dead lettered', not com.syncwatch.message.dead_lettered."""
    if member.kind != "event":
        return member.operation
    return member.operation.rsplit(".", 1)[-1].replace("_", " ")


def _reason(member: Member) -> str:
    text = str(member.error_message or member.attributes.get("error.type") or "failed")
    return mask_emails(ANSWERED.sub("", text, count=1))


def _with_context(draft: Draft, context: dict[str, Any]) -> Draft:
    return Draft(
        **{
            **{f: getattr(draft, f) for f in Draft.__slots__},
            "context": context,
            "suggested_action": SUGGESTED[draft.category] if draft.actionable else None,
        }
    )


def _id(*parts: str) -> str:
    return "exc-" + hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:16]
