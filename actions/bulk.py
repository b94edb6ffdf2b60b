"""Bulk jobs: one action over every exception a filter matches. First a plan (how many, which
partners), then a background job that runs within each partner's rate limit (the partner clients
share one limiter), records progress as it goes and stops between items when cancelled."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from actions import ledger, reroute, roles
from actions.errors import ActionError
from actions.ledger import Entry
from actions.masking import summary
from actions.results import ActionResult, BulkPlan
from actions.runner import Request
from actions.services import Services
from correlator.passes import Correlator
from syncwatch.config import Config
from syncwatch.model import utcnow
from syncwatch.redact import mask_emails
from syncwatch.store import Store
from syncwatch.store import actions as q

BULK_ACTIONS = ("retry", "reroute", "replay", "resolve", "ignore", "assign")
WORKERS = 8
"""Items in flight at once: enough to keep a partner's rate limit busy while each waits on the store."""
Runner = Callable[[Services, Request], ActionResult]


class Refused(ActionError):
    """The actor may not start or cancel this bulk job (it is audited all the same)."""


def plan(services: Services, action: str, filters: dict[str, Any], actor: str, target: str | None = None) -> BulkPlan:
    if action not in BULK_ACTIONS:
        raise ValueError(f"bulk runs {', '.join(BULK_ACTIONS)}, not {action!r}")
    if action == "assign" and not roles.may(services.config, target or "", "resolve"):
        raise ValueError(roles.cannot_work(services.config, target))
    allowed = reroute.targets(services.config, actor) if action == "reroute" else []
    if action == "reroute" and target not in allowed:
        if not target:
            said = "name the partner to reroute to"
        elif target in reroute.fulfilers(services.config):
            said = f"{target} is outside your partners ({roles.scope_of(services.config, actor)})"
        else:
            said = f"{target} is not a warehouse or 3PL"
        raise ValueError(f"{said}; choose from {', '.join(allowed) or 'none configured'}")
    with services.store.engine.connect() as conn:
        matched = [r for r in q.select_exceptions(conn, filters) if roles.in_scope(services.config, actor, r)]
        moved = q.rerouted_among(conn, [r["id"] for r in matched]) if action == "reroute" else set()
        systems = q.observation_systems(conn, [r["observation_id"] for r in matched if r["observation_id"]])
    partner = {r["id"]: reroute.failed_at(services, systems.get(r["observation_id"]), r) for r in matched}
    why = {r["id"]: _left_out(services, action, r, partner[r["id"]], target, r["id"] in moved) for r in matched}
    rows = [r for r in matched if not why[r["id"]]]
    left_out = Counter(reason for reason in why.values() if reason)
    partners = Counter(partner[r["id"]] for r in rows)
    ids, chosen = tuple(r["id"] for r in rows), target if action in ("assign", "reroute") else None
    suggested = dict(Counter(r["suggested_action"] or "none" for r in rows))
    categories = dict(Counter(str(r["category"]) for r in rows))
    breached = sum(1 for r in rows if r["sla_state"] == "breached")
    return BulkPlan(
        action,
        dict(filters),
        len(rows),
        dict(partners),
        ids,
        target=chosen,
        suggested=suggested,
        left_out=left_out,
        categories=categories,
        breached=breached,
    )


def _left_out(
    services: Services, action: str, row: dict[str, Any], partner: str, target: str | None, rerouted: bool
) -> str | None:
    """Why an exception the filter matched is not in the job: what the action would refuse anyway,
    or for a reroute, what a lead would not move there one by one (``partner``: where its failed step went)."""
    status = row["status"]
    if status == "resolved" and action != "assign":
        return "already resolved"
    if status == "ignored" and action == "ignore":
        return "already ignored"
    if action != "reroute":
        return None
    if rerouted:
        return "already rerouted"
    return reroute.left_out(services.config, row, partner, str(target))


def refuse_unplanned(services: Services, action: str, actor: str, filters: dict[str, Any], reason: str) -> None:
    """Audit a bulk job refused before it was planned (the command line asks the role first)."""
    entry = Entry(actor, roles.audited_role(services.config, actor), f"bulk {action}", None, summary(filters=filters))
    entry.result, entry.detail = "refused", {"reason": reason}
    with services.store.writing() as conn:
        ledger.audit(conn, entry, services.clock())


def start(services: Services, plan: BulkPlan, actor: str, run: Runner, note: str | None = None) -> str:
    """Record the job and start it in a background thread; raises ``Refused`` for non-leads."""
    now, job_id = services.clock(), f"job-{uuid.uuid4().hex[:16]}"
    entry = Entry(
        actor,
        roles.audited_role(services.config, actor),
        f"bulk {plan.action}",
        job_id,
        summary(filters=plan.filters, count=plan.count, partners=plan.partners, target=plan.target),
    )
    allowed = roles.may(services.config, actor, "bulk") and roles.may(services.config, actor, plan.action)
    with services.store.writing() as conn:
        if not allowed:
            entry.result, entry.detail = "refused", {"reason": f"{actor} may not run bulk {plan.action}"}
            ledger.audit(conn, entry, now)
        else:
            q.create_job(conn, _job_row(job_id, plan, actor, note or plan.note, now))
            entry.detail = {"job_id": job_id}
            ledger.audit(conn, entry, now)
    if not allowed:
        raise Refused(f"only a lead may run bulk jobs, and {actor} is {roles.described(services.config, actor)}")
    threading.Thread(
        target=_work, args=(services, job_id, plan, actor, run, note or plan.note), daemon=True, name=job_id
    ).start()
    return job_id


def _job_row(job_id: str, plan: BulkPlan, actor: str, note: str | None, now: Any) -> dict[str, Any]:
    return {
        "id": job_id,
        "kind": plan.action,
        "actor": actor,
        "filters": plan.filters,
        "partners": plan.partners,
        "exception_ids": list(plan.exception_ids),
        "note": note,
        "status": "running",
        "total": plan.count,
        "created_at": now,
        "updated_at": now,
    }


def _work(services: Services, job_id: str, plan: BulkPlan, actor: str, run: Runner, note: str | None) -> None:
    stop = threading.Event()

    def one(exception_id: str) -> None:
        if stop.is_set():
            return
        request = Request(plan.action, exception_id, actor, note, target=plan.target, job_id=job_id, settle=False)
        result = run(services, request)
        fixed, failed = (0, 0) if result.skipped else (int(result.ok), int(not result.ok))
        with services.store.writing() as conn:
            status = q.job_progress(conn, job_id, fixed, failed, services.clock(), skipped=int(bool(result.skipped)))
        if status != "running":
            stop.set()

    with ThreadPoolExecutor(WORKERS, thread_name_prefix=job_id) as pool:
        list(pool.map(one, plan.exception_ids))
    _close(services, job_id, "cancelled" if stop.is_set() else "finished")


def _close(services: Services, job_id: str, status: str) -> None:
    services.flush()
    Correlator(services.store, services.config).run_pass()
    with services.store.writing() as conn:
        q.set_job_status(conn, job_id, status, services.clock())


def status(store: Store, job_id: str) -> dict[str, Any]:
    """The job row, with ``skipped``: the items found already done (another agent's resolve, an
    earlier retry), which are neither ``succeeded`` nor ``failed``, and why (``skipped_reasons``)."""
    with store.engine.connect() as conn:
        job = q.job(conn, job_id)
        if job is None:
            return {"id": job_id, "status": "unknown"}
        job["skipped"] = job["done"] - job["succeeded"] - job["failed"]
        found = q.job_reasons(conn, job_id)[1] if job["skipped"] else {}
        masked: Counter[str] = Counter()  # a reason may name an assignee by e-mail address: masked, as failures
        for reason, n in found.items():
            masked[mask_emails(reason)] += n
        job["skipped_reasons"] = dict(sorted(masked.items(), key=lambda i: (-i[1], i[0])))
    job.pop("exception_ids")
    job["progress"] = job["done"] / job["total"] if job["total"] else 1.0
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in job.items()}


def failure_reasons(store: Store, job_id: str) -> list[tuple[str, int]]:
    """Why the job's failed items failed, most frequent first (items found already done are not among them)."""
    with store.engine.connect() as conn:
        return q.job_reasons(conn, job_id)[0].most_common()


def cancel(store: Store, job_id: str, actor: str, config: Config) -> ActionResult:
    """Ask a running job to stop between items (its starter or a lead may); the items already sent
    stay done (and audited)."""
    now = utcnow()
    role = roles.audited_role(config, actor)
    with store.writing() as conn:
        job = q.job(conn, job_id)
        allowed = job is not None and (actor == job["actor"] or role == roles.LEAD)
        stopped = allowed and q.set_job_status(conn, job_id, "cancelling", now, only_from=("running",))
        entry = Entry(actor, role, "bulk cancel", job_id, "", "succeeded" if stopped else "refused")
        ledger.audit(conn, entry, now)
    if not stopped:
        return ActionResult(
            False, job["status"] if job else "unknown", f"Job {job_id} is not running or not yours to stop."
        )
    return ActionResult(True, "cancelling", f"Job {job_id} stops after the items in flight.")
