"""The values the action layer hands back: one action's result, a bulk job's plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ActionResult:
    """What happened, for the person who asked: ``status`` is the exception's status afterwards."""

    ok: bool
    status: str
    message: str
    action_id: str | None = None
    skipped: str | None = None
    """Why nothing needed doing ("already retried", "already resolved"): a bulk job counts these
    apart from what it fixed, so "40 succeeded" means 40 fixed by the job."""


@dataclass(frozen=True)
class BulkPlan:
    """What a bulk job would touch: every matching exception, not just a visible page."""

    action: str
    filters: dict[str, Any]
    count: int
    partners: dict[str, int]
    exception_ids: tuple[str, ...]
    note: str | None = None
    target: str | None = None
    """The assignee of a bulk assign, or the partner a bulk reroute moves the orders to."""
    suggested: dict[str, int] = field(default_factory=dict)
    """How many of them suggest each action (retry, reroute, replay, resolve, or none)."""
    left_out: dict[str, int] = field(default_factory=dict)
    """Exceptions the filter matched that the job leaves out, by reason (already resolved…)."""
    categories: dict[str, int] = field(default_factory=dict)
    """How many of them are of each category: a lead moving a backlog sees what it is made of."""
    breached: int = 0
    """How many of their orders are already past their SLA: a reroute hands them over late."""

    @property
    def left_out_text(self) -> str | None:
        if not self.left_out:
            return None
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(self.left_out.items(), key=lambda i: -i[1]))
        return f"Left out: {reasons}."

    @property
    def makeup(self) -> str | None:
        """'42 partner unavailable, 17 timeout; the orders of 55 are already past their SLA.'"""
        if not self.categories:
            return None
        kinds = ", ".join(
            f"{n} {c.replace('_', ' ')}" for c, n in sorted(self.categories.items(), key=lambda i: (-i[1], i[0]))
        )
        late = ""
        if self.breached:
            late = f"; the orders of {self.breached} are already past their SLA"
            if self.action == "reroute" and self.target:
                late += f", which {self.target} takes over late"
        return f"Of them: {kinds}{late}."

    @property
    def caveat(self) -> str | None:
        """For retry and replay: the matched exceptions that suggest something else (a stuck
        stage has no failed request to send again), which the job would most likely fail on."""
        if self.action not in ("retry", "replay"):
            return None
        others = {a: n for a, n in self.suggested.items() if a != self.action}
        nothing = others.pop("none", 0)
        parts = []
        if others:
            listed = ", ".join(f"{action} {n}" for action, n in sorted(others.items(), key=lambda i: -i[1]))
            parts.append(f"another action is suggested for {sum(others.values())} of them ({listed})")
        if nothing:
            parts.append(f"{nothing} of them {'has' if nothing == 1 else 'have'} no failed request to send again")
        if not parts:
            return None
        said = "; ".join(parts)
        return f"{said[0].upper()}{said[1:]}: {self.action} will likely fail there."
