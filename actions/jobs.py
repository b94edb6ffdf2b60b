"""The automatic retry policy as a `serve` scheduler job: each run retries the open transient
exceptions whose backoff has passed, within the partners' rate limits, as actor ``policy:auto-retry``."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from actions import breaker, ledger, retry, roles
from actions.api import run
from actions.policy import History, Policy, decide
from actions.results import ActionResult
from actions.runner import Request, rerouted
from actions.services import Services, services_for
from actions.wording import span
from syncwatch.commands.serve import Job
from syncwatch.config import Config
from syncwatch.store import Store
from syncwatch.store import actions as q

log = logging.getLogger(__name__)
Runner = Callable[[Services, Request], ActionResult]


def run_policy(services: Services, run: Runner, now: datetime | None = None) -> list[ActionResult]:
    """One pass of the policy: decide for each open exception of a retried category, act on the due
    ones, but hold those to a partner whose circuit is open (``actions.breaker``) but for its probe."""
    policy = Policy.from_config(services.config.file.actions.policy)
    settings = breaker.Settings.from_config(services.config.file.actions.policy)
    now = now or services.clock()
    with services.store.engine.connect() as conn:
        candidates = q.open_exceptions_in(conn, sorted(policy.categories))
        unsendable = q.unprepared_since(
            conn, roles.POLICY_ACTOR, "retry", {r["id"]: r["last_seen_at"] for r in candidates}
        )
        histories = [(row, *_history(conn, row, unsendable.get(row["id"]))) for row in candidates]
    # A rerouted exception is a person's again (reopened when nothing confirmed the move): a retry would
    # be refused, and audited, at every pass.
    due = [
        (row, history, partner)
        for row, history, partner in histories
        if decide(policy, history, now).retry and not rerouted(services, {"id": history.exception_id})
    ]
    circuits = breaker.read(services, now) if settings.enabled else {}
    for circuit in circuits.values():  # what a pass cut short left unwritten, and circuits idle too long
        breaker.settle(services, circuit, settings, now)
    held: Counter[str] = Counter()
    results = []
    for row, history, partner in due:
        partner = partner or (retry.partner_of(services, row) if settings.enabled else None)
        circuit = circuits.setdefault(partner, breaker.Circuit(partner)) if partner and settings.enabled else None
        if circuit is not None and circuit.holds(settings, now):
            held[circuit.partner] += 1  # not sent, not an attempt: it stays due, for after the circuit closes
            continue
        probe = circuit is not None and circuit.open
        result = run(services, Request("retry", history.exception_id, roles.POLICY_ACTOR))
        if result.action_id is None:
            log.warning("automatic retry of %s not sent, left to a person: %s", history.exception_id, result.message)
        results.append(result)
        if circuit is None or result.action_id is None:
            continue
        with services.store.engine.connect() as conn:
            outcome = (q.action(conn, result.action_id) or {}).get("outcome") or {}
        circuit.saw(outcome)
        if probe:
            breaker.probed(services, circuit, settings, now, history.exception_id, result.ok)
        breaker.settle(services, circuit, settings, now)
    for partner, n in held.items():
        log.debug("automatic retries to %s held while its circuit is open: %d", partner, n)
    return results


def _history(conn: Any, row: dict[str, Any], unsendable: str | None) -> tuple[History, str | None]:
    """The policy's view of one exception, and the partner its automatic retries went to, if any went."""
    automatic = [a for a in q.actions_of(conn, row["id"], "retry") if a["actor"] == roles.POLICY_ACTOR]
    last = automatic[0] if automatic else None
    last_failure = max([row["last_seen_at"], *([last["finished_at"]] if last and last["finished_at"] else [])])
    retry_after = (last["outcome"] or {}).get("retry_after") if last else None
    attempts = sum(a["attempts"] for a in automatic)
    partner = next((str(a["request"]["partner"]) for a in automatic if (a["request"] or {}).get("partner")), None)
    return History(row["id"], row["category"], last_failure, attempts, retry_after, unsendable), partner


def reopen_unconfirmed(services: Services, now: datetime | None = None) -> list[str]:
    """Open again the exceptions left retrying longer than ``confirm_within``: a retry or reroute
    the partner took but no observation ever confirmed would otherwise read as in hand forever.
    Each says why in its history and in the audit log."""
    window = services.config.file.actions.confirm_within
    now = now or services.clock()
    reopened = []
    with services.store.writing() as conn:
        for row in q.unconfirmed(conn, now - window):
            last = row["last"]
            what = f"the {last['kind']} of {last['requested_at']:%a %d %b %H:%M} UTC" if last else "the last action"
            reason = f"nothing confirmed {what} within {span(window)}: open again for a person to look at"
            values = {"status": "open", "updated_at": now}
            done = ledger.record_done(conn, row["id"], "reopen", roles.WATCH_ACTOR, {}, {"reason": reason}, now)
            q.set_exception(conn, row["id"], values)
            entry = ledger.Entry(roles.WATCH_ACTOR, roles.POLICY, "reopen", row["id"], "", "succeeded")
            entry.detail = {"action_id": done, "reason": reason, "status_before": row["status"], "status_after": "open"}
            ledger.audit(conn, entry, now)
            reopened.append(row["id"])
    return reopened


STALLED_AFTER = timedelta(minutes=10)  # a job's items each take seconds; this long without one, its process is gone


def close_stalled_jobs(services: Services, now: datetime | None = None) -> list[str]:
    """Bulk jobs whose process ended without finishing them (killed, the machine restarted) are
    closed as cancelled, with why in the audit log: one left 'running' could be neither watched
    nor cancelled. Items it left mid-way are taken over by the next action after their lease."""
    now = now or services.clock()
    closed = []
    with services.store.writing() as conn:
        for job_id in q.stalled_jobs(conn, now - STALLED_AFTER):
            if q.set_job_status(conn, job_id, "cancelled", now, only_from=("running", "cancelling")):
                reason = f"no progress for {span(STALLED_AFTER)}: the process running it ended"
                entry = ledger.Entry(roles.WATCH_ACTOR, roles.POLICY, "bulk interrupted", job_id, "", "succeeded")
                entry.detail = {"reason": reason}
                ledger.audit(conn, entry, now)
                closed.append(job_id)
    return closed


def policy_jobs(config: Config, store: Store) -> Iterable[Job]:
    services = services_for(store, config)
    yield Job("actions:watch", lambda: _watch(services), WATCH_INTERVAL_S)
    settings = config.file.actions.policy
    if not settings.enabled:
        off = "automatic retries are off ([actions.policy] enabled = false)"
    elif not config.own_partners:  # whatever listens on those ports is not a partner that agreed to it
        off = "automatic retries are off: [partners] are the simulator's"
        log.info("automatic retries off: [partners] are the simulator's, on this machine, until a config names yours")
    else:
        off = None
    if off or not settings.breaker_failures:  # a circuit an earlier start left open would read as paused
        breaker.close_open(services, services.clock(), off or "the breaker is off (breaker_failures = 0)")
    if off is None:
        yield Job("actions:auto-retry", lambda: _logged(services, run), settings.interval_s)


WATCH_INTERVAL_S = 60.0


def _watch(services: Services) -> None:
    for exception_id in reopen_unconfirmed(services):
        log.warning("exception %s opened again: its retry or reroute was never confirmed", exception_id)
    for job_id in close_stalled_jobs(services):
        log.warning("bulk job %s closed as cancelled: no progress for %s", job_id, span(STALLED_AFTER))


def _logged(services: Services, run: Runner) -> None:
    results = run_policy(services, run)
    sent = [r for r in results if r.action_id is not None]
    if sent:
        log.info("automatic retries: %d sent, %d succeeded", len(sent), sum(r.ok for r in sent))
