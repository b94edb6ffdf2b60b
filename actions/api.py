"""The action layer's public API: what the dashboard and the CLI call. Refusals return, never raise."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from actions import roles
from syncwatch.config import Config
from syncwatch.store import Store

ACTIONS = roles.EXCEPTION_ACTIONS


@dataclass(frozen=True)
class ActionResult:
    """What happened, for the person who asked: ``status`` is the exception's status afterwards."""

    ok: bool
    status: str
    message: str
    action_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BulkPlan:
    """What a bulk job would touch: every matching exception, not just a visible page."""

    action: str
    filters: dict[str, Any]
    count: int
    partners: dict[str, int]
    exception_ids: tuple[str, ...]
    note: str | None = None


def role_of(config: Config, actor: str) -> str:
    return roles.role_of(config, actor)


def allowed_actions(config: Config, actor: str, exception_row: Any) -> set[str]:
    return roles.allowed_actions(config, actor, exception_row)


def perform(
    store: Store,
    config: Config,
    *,
    action: str,
    exception_id: str,
    actor: str,
    note: str | None = None,
    payload: dict[str, Any] | None = None,
    target: str | None = None,
) -> ActionResult:
    """Run one action on one exception as ``actor``: checked, claimed, sent, audited."""
    raise NotImplementedError("actions arrive in the next commit")


def plan_bulk(store: Store, config: Config, *, action: str, filters: dict[str, Any], actor: str) -> BulkPlan:
    raise NotImplementedError("bulk jobs arrive in a later commit")


def start_bulk(store: Store, config: Config, plan: BulkPlan, actor: str) -> str:
    raise NotImplementedError("bulk jobs arrive in a later commit")


def bulk_status(store: Store, job_id: str) -> dict[str, Any]:
    raise NotImplementedError("bulk jobs arrive in a later commit")


def cancel_bulk(store: Store, job_id: str, actor: str) -> ActionResult:
    raise NotImplementedError("bulk jobs arrive in a later commit")
