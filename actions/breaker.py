"""A circuit per partner for the automatic retries: when a partner is down, its 300 open exceptions
must not each keep sending their own retries to it.

After ``breaker_failures`` automatic retries to one partner in a row find it unavailable or timed out,
its circuit opens: the policy holds its automatic retries (not sent, not counted as attempts, still
open for a person) and lets one through as a probe at most every ``breaker_cooldown``. The first
probe the partner answers closes it, and the held retries go on under their own backoff. A person's
retry, reroute or bulk job is never held, and neither opens nor closes a circuit.

The state lives in the audit log, which `serve` instances on one database share and a restart keeps:
each automatic retry's outcome names its partner, and every change (opened, probe, closed) is an
entry of its own, with a log line naming the partner and why. Only the policy job writes them, and
it runs in one instance at a time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from actions import ledger, roles
from actions.masking import mask
from actions.services import Services
from actions.wording import span
from syncwatch.config.schema import RetryPolicy
from syncwatch.model import as_utc
from syncwatch.redact import clip
from syncwatch.store import actions as q

log = logging.getLogger(__name__)

UNAVAILABLE = frozenset({"PartnerUnavailable", "PartnerTimeout"})
"""An automatic retry that failed so: the partner did not answer (connection refused, 5xx, no answer in time)."""
ANSWERED = frozenset({"PartnerRejected", "PartnerThrottled"})
"""Failures that show the partner is up: it read the request and refused it, or asked for a pause."""
OPENED, PROBE, CLOSED = q.CIRCUIT_CHANGES
IDLE = q.CIRCUIT_MEMORY / 2
"""An open circuit nothing was due to probe for this long is closed: it is remembered only so long."""


@dataclass(frozen=True)
class Settings:
    failures: int
    cooldown: timedelta

    @classmethod
    def from_config(cls, config: RetryPolicy) -> Settings:
        return cls(config.breaker_failures, config.breaker_cooldown)

    @property
    def enabled(self) -> bool:
        return self.failures > 0


@dataclass
class Circuit:
    partner: str
    open: bool = False
    probed_at: datetime | None = None
    """When it opened or last let a probe through: the next probe goes a cool-down later."""
    failures: int = 0
    """Automatic retries in a row that found the partner unavailable, since it last closed."""
    reason: str | None = None
    """The last of those failures, as the partner's error said it."""
    answered: str | None = None
    """What answered since it opened: a probe's success whose close is not written yet (a crash between)."""

    def saw(self, outcome: dict[str, Any]) -> None:
        """One automatic retry's outcome at this partner. One that found its document there already
        and sent nothing says only that the partner's reads answer, not that it takes orders again."""
        error = outcome.get("error")
        if error in UNAVAILABLE:
            self.failures += 1
            self.reason = _partner_text(outcome.get("reason") or error)
        elif outcome.get("resolved_without_request"):
            return
        elif error is None or error in ANSWERED:
            self.failures = 0
            if self.open:
                self.answered = (
                    "an automatic retry to it succeeded"
                    if error is None
                    else f"it answered an automatic retry: {_partner_text(outcome.get('reason'))}"
                )

    def next_probe(self, settings: Settings) -> datetime | None:
        return self.probed_at + settings.cooldown if self.open and self.probed_at else None

    def holds(self, settings: Settings, now: datetime) -> bool:
        """Whether an automatic retry to this partner waits now (an open circuit not due a probe)."""
        due = self.next_probe(settings)
        return due is not None and now < due


def read(services: Services, now: datetime) -> dict[str, Circuit]:
    """Every partner's circuit, from the audit log of the last ``CIRCUIT_MEMORY``."""
    since = min(now, services.clock()) - q.CIRCUIT_MEMORY
    with services.store.engine.connect() as conn:
        trail = q.circuit_trail(conn, roles.POLICY_ACTOR, since)
    circuits: dict[str, Circuit] = {}
    for row in trail:
        detail = row["detail"] or {}
        if row["action"] == "retry":
            outcome = detail.get("outcome") or {}
            if outcome.get("partner"):
                partner = str(outcome["partner"])
                circuits.setdefault(partner, Circuit(partner)).saw(outcome)
            continue
        circuit = circuits.setdefault(str(row["target"]), Circuit(str(row["target"])))
        if row["action"] == OPENED:
            circuit.open, circuit.probed_at, circuit.answered = True, as_utc(row["at"]), None
            circuit.reason = detail.get("reason", circuit.reason)
        elif row["action"] == PROBE:
            circuit.open, circuit.probed_at = True, as_utc(row["at"])
        else:
            circuit.open, circuit.failures, circuit.answered, circuit.probed_at = False, 0, None, None
    return circuits


def settle(services: Services, circuit: Circuit, settings: Settings, now: datetime) -> None:
    """Record the change the outcomes seen call for, if any: open after ``failures`` in a row, close
    once the partner answered, or close one left open with nothing to probe for ``IDLE``."""
    if settings.enabled and not circuit.open and circuit.failures >= settings.failures:
        circuit.open, circuit.probed_at, circuit.answered = True, now, None
        why = f"{circuit.failures} automatic retries to it in a row failed, the last: {circuit.reason}"
        then = f"its automatic retries wait, one probe every {span(settings.cooldown)}"
        _change(services, circuit, OPENED, now, why, then, failures=circuit.failures, level=logging.WARNING)
    elif circuit.open and circuit.answered:
        why, circuit.open, circuit.failures, circuit.answered = circuit.answered, False, 0, None
        _change(services, circuit, CLOSED, now, why, "the held automatic retries go on under their backoff")
    elif circuit.open and circuit.probed_at is not None and now - circuit.probed_at >= IDLE:
        circuit.open, circuit.failures = False, 0
        why = f"no automatic retry was due to probe it for {span(IDLE)}"
        _change(services, circuit, CLOSED, now, why, "the next failures open it again")


def probed(
    services: Services, circuit: Circuit, settings: Settings, now: datetime, exception_id: str, ok: bool
) -> None:
    """Record the probe sent now (its outcome already seen); ``settle`` then closes the circuit if it answered."""
    circuit.probed_at = now
    if ok:
        result = "it succeeded"
    elif circuit.answered:
        result = "the partner answered"
    else:
        result = f"it failed: {circuit.reason}"
    later = now + settings.cooldown
    then = "closing it" if circuit.answered else f"still open; the next probe after {later:%H:%M:%S} UTC"
    why = f"the automatic retry of {exception_id} went as a probe and {result}"
    _change(services, circuit, PROBE, now, why, then, exception_id=exception_id)


def _change(
    services: Services,
    circuit: Circuit,
    change: str,
    now: datetime,
    why: str,
    then: str,
    level: int = logging.INFO,
    **detail: Any,
) -> None:
    log.log(level, "%s to %s: %s; %s", change, circuit.partner, why, then)
    entry = ledger.Entry(roles.POLICY_ACTOR, roles.POLICY, change, circuit.partner, f"{why}; {then}", "succeeded")
    entry.detail = {"reason": why, "then": then, **detail}
    with services.store.writing() as conn:
        ledger.audit(conn, entry, now)


def _partner_text(text: Any) -> str:
    """A partner's error as the audit log, the log line and the dashboard quote it: personal data
    masked (an answer may echo the order's customer), cut to a readable length."""
    return clip(str(mask(str(text))), REASON_LIMIT)


REASON_LIMIT = 300


def close_open(services: Services, now: datetime, why: str) -> None:
    """Close every circuit still open: where the policy or its breaker is off, none holds anything,
    and the pages and /metrics must not go on saying so."""
    for circuit in read(services, now).values():
        if circuit.open:
            circuit.open, circuit.failures, circuit.answered = False, 0, None
            _change(services, circuit, CLOSED, now, why, "automatic retries are no longer held")
