"""Automatic retries as data: a frozen policy and a pure decision with an injected clock, so tests
never sleep. Transient failures (429, 5xx, timeouts) are retried with exponential backoff and
jitter, never before the partner's Retry-After, up to ``max_attempts``; then a person decides."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from syncwatch.config.schema import RetryPolicy


@dataclass(frozen=True)
class Policy:
    categories: frozenset[str]
    max_attempts: int
    backoff: timedelta
    backoff_max: timedelta
    multiplier: float
    jitter: float
    max_age: timedelta = timedelta(hours=24)

    @classmethod
    def from_config(cls, config: RetryPolicy) -> Policy:
        return cls(
            frozenset(config.categories),
            config.max_attempts,
            config.backoff,
            config.backoff_max,
            config.multiplier,
            config.jitter,
            config.max_age,
        )


@dataclass(frozen=True)
class History:
    """What the decision needs of an exception: its category, when it last failed, the automatic
    attempts so far with the partner's last Retry-After, and why the policy could not even build a
    retry since that failure (no recorded body, no partner to send it to), if it could not."""

    exception_id: str
    category: str
    last_failure: datetime
    attempts: int
    retry_after: float | None = None
    unsendable: str | None = None


@dataclass(frozen=True)
class Decision:
    retry: bool
    at: datetime | None
    reason: str


def decide(policy: Policy, history: History, now: datetime) -> Decision:
    """Retry now, wait until ``at``, or leave the exception to a person (``at`` is None)."""
    if history.category not in policy.categories:
        return Decision(False, None, f"{history.category} is not retried automatically")
    if history.attempts >= policy.max_attempts:
        return Decision(False, None, f"{history.attempts} automatic attempts made; a person decides now")
    if now - history.last_failure > policy.max_age:
        hours = f"{policy.max_age.total_seconds() / 3600:g} h"
        return Decision(False, None, f"it last failed more than {hours} ago; a person decides now")
    if history.unsendable:
        return Decision(False, None, f"cannot be retried as it was sent ({history.unsendable}); a person decides now")
    due = history.last_failure + max(wait(policy, history), timedelta(seconds=history.retry_after or 0))
    if now >= due:
        return Decision(True, now, f"attempt {history.attempts + 1} of {policy.max_attempts}")
    return Decision(False, due, f"waiting until {due:%H:%M:%S} UTC")


def wait(policy: Policy, history: History) -> timedelta:
    """Exponential backoff with up to ``jitter`` of it drawn away, the same draw for the same try
    (a hash, not a random generator), so the decision stays a pure function."""
    base = min(policy.backoff * (policy.multiplier**history.attempts), policy.backoff_max)
    digest = hashlib.sha1(f"{history.exception_id}:{history.attempts}".encode()).digest()
    share = int.from_bytes(digest[:4], "big") / 2**32
    return base * (1 - policy.jitter * share)
