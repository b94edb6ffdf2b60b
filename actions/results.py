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
    """The assignee of a bulk assign."""
    suggested: dict[str, int] = field(default_factory=dict)
    """How many of them suggest each action (retry, reroute, replay, resolve, or none)."""

    @property
    def caveat(self) -> str | None:
        """For retry and replay: the matched exceptions that suggest something else (a stuck
        stage has no failed request to send again), which the job would most likely fail on."""
        if self.action not in ("retry", "replay"):
            return None
        others = {a: n for a, n in self.suggested.items() if a != self.action}
        if not others:
            return None
        listed = ", ".join(f"{action} {n}" for action, n in sorted(others.items(), key=lambda i: -i[1]))
        count = sum(others.values())
        return f"Another action is suggested for {count} of them ({listed}); {self.action} will likely fail there."
