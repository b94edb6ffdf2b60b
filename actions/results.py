"""The values the action layer hands back: one action's result, a bulk job's plan."""

from __future__ import annotations

from dataclasses import dataclass
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
