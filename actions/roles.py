"""Who may do what: roles from the config's [users], optionally scoped to channels and partners."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from syncwatch.config import Config

EXECUTIVE, AGENT, LEAD, POLICY = "executive", "agent", "lead", "policy"
POLICY_ACTOR = "policy:auto-retry"
"""The actor automatic retries are recorded under; it may only retry."""
WATCH_ACTOR = "policy:watch"
"""The actor of what `serve` does on its own when an action goes unanswered: an exception whose
retry or reroute nothing confirmed opened again, a bulk job whose process died closed."""

EXCEPTION_ACTIONS = ("retry", "reroute", "replay", "resolve", "ignore", "reopen", "assign", "note")
RIGHTS: dict[str, frozenset[str]] = {
    EXECUTIVE: frozenset(),
    AGENT: frozenset({"retry", "replay", "resolve", "ignore", "reopen", "assign", "note"}),
    LEAD: frozenset({*EXCEPTION_ACTIONS, "bulk", "policies", "alerts"}),
    POLICY: frozenset({"retry"}),
}


NOT_A_USER = "not a user"  # the role the audit log records for a name [users] does not hold


def audited_role(config: Config, actor: str) -> str:
    """The role to record: an unknown name may read like an executive, but was not one."""
    if actor != POLICY_ACTOR and actor not in config.file.users:
        return NOT_A_USER
    return role_of(config, actor)


def role_of(config: Config, actor: str) -> str:
    """The actor's role; unknown users are read-only executives, so a typo never grants rights."""
    if actor == POLICY_ACTOR:
        return POLICY
    user = config.file.users.get(actor)
    return user.role if user is not None else EXECUTIVE


def is_known(config: Config, actor: str) -> bool:
    return actor == POLICY_ACTOR or actor in config.file.users


def may(config: Config, actor: str, action: str) -> bool:
    return action in RIGHTS[role_of(config, actor)]


def described(config: Config, actor: str) -> str:
    """'an agent', 'a lead', or 'not a configured user': for messages that say why not."""
    if not is_known(config, actor):
        return "not a configured user"
    role = role_of(config, actor)
    return f"an {role}" if role[0] in "aeiou" else f"a {role}"


def cannot_work(config: Config, assignee: str | None) -> str:
    """Why an exception cannot be assigned to ``assignee``."""
    if not assignee:
        return "name the person to assign it to: an agent or a lead"
    if not is_known(config, assignee):
        return f"there is no user {assignee} in the config; assign an agent or a lead"
    return f"{assignee} is {described(config, assignee)}, who cannot work exceptions; assign an agent or a lead"


def scope_of(config: Config, actor: str) -> str:
    """The channels and partners a person works, as a message names them ('everything' if unscoped)."""
    user = config.file.users.get(actor)
    named = [*user.scope.channels, *user.scope.partners] if user is not None else []
    return ", ".join(named) if named else "everything"


def in_scope(config: Config, actor: str, exception_row: Any) -> bool:
    """Whether the exception lies within the actor's channels and partners (no scope: everything)."""
    user = config.file.users.get(actor)
    if user is None:
        return actor == POLICY_ACTOR
    context = _field(exception_row, "context") or {}
    channels, partners = user.scope.channels, user.scope.partners
    if channels and context.get("channel") not in channels:
        return False
    systems = {_field(exception_row, "system"), context.get("partner")}
    return not partners or bool(systems & set(partners))


def may_send_to(config: Config, actor: str, partner: str) -> bool:
    """Whether a reroute by ``actor`` may move an order to ``partner``: inside their partners, if
    they are limited to some (a lead of one 3PL hands orders to another 3PL's lead, not to it)."""
    user = config.file.users.get(actor)
    return user is None or not user.scope.partners or partner in user.scope.partners


def allowed_actions(config: Config, actor: str, exception_row: Any) -> set[str]:
    """The exception actions this actor may take on this exception (empty for executives)."""
    if not in_scope(config, actor, exception_row):
        return set()
    return {a for a in EXCEPTION_ACTIONS if a in RIGHTS[role_of(config, actor)]}


def _field(row: Any, name: str) -> Any:
    """Rows arrive as mappings (dicts, frames' records) or as SQLAlchemy rows."""
    if isinstance(row, Mapping):
        return row.get(name)
    return getattr(row, name, None)
