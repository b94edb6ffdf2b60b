"""Bulk jobs: a plan over everything a filter matches, a job within the rate limit, cancellation."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from actions_support import SEEDED_AT, seed_exceptions, world
from sqlalchemy import select, update

from actions import bulk
from actions.api import bulk_failure_reasons, bulk_status, cancel_bulk, perform, plan_bulk, start_bulk
from actions.bulk import Refused
from actions.results import ActionResult, BulkPlan
from actions.runner import Request
from actions.services import Services, close_all, services_for
from syncwatch.config import load_config
from syncwatch.redact import mask_emails
from syncwatch.store import Store
from syncwatch.store.filters import QueueFilter
from syncwatch.store.schema import exceptions


def wait_for(store: Store, job_id: str) -> dict[str, Any]:
    """Until the job's thread is gone (joined, not slept on)."""
    for thread in [t for t in threading.enumerate() if t.name == job_id]:
        thread.join()
    return bulk_status(store, job_id)


def three_rejected_then_fixed(w: Any) -> Any:
    """Three orders the ERP rejected for unknown SKUs, whose SKUs it then knows: a bulk retry's plan of them."""
    for _ in range(3):
        w.order()
    w.driver.network.erp.skus.update(
        f"{s}-{n:04d}" for s in ("CHR", "DSK", "LMP", "RUG", "SHF", "TBL", "CAB", "BED") for n in range(9000, 10000)
    )
    return plan_bulk(w.store, w.config, action="retry", filters={"category": "validation"}, actor="alex")


def test_a_bulk_retry_plans_then_runs_every_matching_exception(run_collector: Any, tmp_path: Path) -> None:
    with world(run_collector, tmp_path, ["unknown_sku=1"]) as w:
        plan = three_rejected_then_fixed(w)
        assert plan.count == 3 and plan.partners == {"erp": 3}
        with pytest.raises(Refused):
            start_bulk(w.store, w.config, plan, "sam")
        status = wait_for(w.store, start_bulk(w.store, w.config, plan, "alex"))
        assert (status["status"], status["done"], status["succeeded"]) == ("finished", 3, 3)
        assert all(w.status(i) == "resolved" for i in plan.exception_ids)
        assert [e["result"] for e in w.audit() if e["action"] == "bulk retry"] == ["refused", "allowed"]
    close_all()


def test_items_found_already_done_are_counted_apart_from_what_the_job_fixed(run_collector: Any, tmp_path: Path) -> None:
    with world(run_collector, tmp_path, ["unknown_sku=1"]) as w:
        plan = three_rejected_then_fixed(w)
        first, second, third = plan.exception_ids
        # Between the plan and the run, an agent fixes two of them one by one.
        assert perform(w.store, w.config, action="retry", exception_id=first, actor="sam").ok
        assert perform(w.store, w.config, action="resolve", exception_id=second, actor="sam", note="done by phone").ok
        status = wait_for(w.store, start_bulk(w.store, w.config, plan, "alex"))
        counts = (status["done"], status["succeeded"], status["failed"], status["skipped"])
        assert counts == (3, 1, 0, 2), status
        assert status["skipped_reasons"] == {"already resolved": 1, "already retried": 1}
        assert bulk_failure_reasons(w.store, status["id"]) == []
        assert w.status(third) == "resolved"
    close_all()


def test_a_cancelled_job_stops_between_items_on_every_engine(store: Store) -> None:
    config = load_config(environ={})
    services = services_for(store, config)
    release = threading.Event()

    def blocked(_services: Services, request: Request) -> ActionResult:
        release.wait()
        return ActionResult(True, "resolved", "done", None)

    plan = BulkPlan("resolve", {"status": "open"}, 40, {"erp": 40}, tuple(f"exc-{n}" for n in range(40)), "n")
    job_id = bulk.start(services, plan, "alex", blocked)
    assert bulk_status(store, job_id)["status"] == "running"
    assert not cancel_bulk(store, job_id, "kim", config).ok
    assert cancel_bulk(store, job_id, "alex", config).ok
    release.set()
    status = wait_for(store, job_id)
    assert status["status"] == "cancelled" and 0 < status["done"] <= bulk.WORKERS
    close_all()


def test_a_bulk_assign_gives_every_matching_exception_to_the_chosen_agent(store: Store) -> None:
    config = load_config(environ={})
    ids = seed_exceptions(store, 5)
    with pytest.raises(ValueError, match="kim is an executive, who cannot work exceptions"):
        plan_bulk(store, config, action="assign", filters={"status": "open"}, actor="alex", target="kim")
    plan = plan_bulk(store, config, action="assign", filters={"status": "open"}, actor="alex", target="sam")
    assert (plan.count, plan.target) == (5, "sam")
    status = wait_for(store, start_bulk(store, config, plan, "alex"))
    with store.engine.connect() as conn:
        assignees = dict(conn.execute(select(exceptions.c.id, exceptions.c.assignee)).all())
    assert (status["status"], status["succeeded"]) == ("finished", 5)
    assert assignees == dict.fromkeys(ids, "sam")
    again = wait_for(store, start_bulk(store, config, plan, "alex"))
    assert (again["failed"], again["skipped"], again["skipped_reasons"]) == (
        0,
        5,
        {"already assigned to sam": 5},
    ), "nothing to do is neither a failure nor a success, and the job says why"
    close_all()


def test_why_a_bulk_job_found_items_already_done_has_e_mail_addresses_masked(store: Store, tmp_path: Path) -> None:
    """The reasons of failed items were masked, those of items found already done were not: a user
    known by the e-mail address of an OIDC sign-in was printed in full."""
    path = tmp_path / "people.toml"
    path.write_text('[users.alex]\nrole = "lead"\n\n[users."jo.doe@example.com"]\nrole = "agent"\n')
    config = load_config(str(path), environ={})
    seed_exceptions(store, 3)
    plan = plan_bulk(
        store, config, action="assign", filters={"status": "open"}, actor="alex", target="jo.doe@example.com"
    )
    wait_for(store, start_bulk(store, config, plan, "alex"))
    again = wait_for(store, start_bulk(store, config, plan, "alex"))
    assert again["skipped_reasons"] == {f"already assigned to {mask_emails('jo.doe@example.com')}": 3}
    assert "jo.doe" not in str(again)
    close_all()


def test_a_bulk_plan_takes_the_queue_filter_as_the_page_records_it(store: Store) -> None:
    config = load_config(environ={})
    ids = seed_exceptions(store, 3)
    every_kind = QueueFilter(categories=("timeout",), assignee="", opened_after=SEEDED_AT, key="SO-1")
    assert QueueFilter.from_mapping(every_kind.as_mapping()) == every_kind
    shown = QueueFilter(categories=("timeout",), opened_after=SEEDED_AT)
    plan = plan_bulk(store, config, action="resolve", filters=shown.as_mapping(), actor="alex")
    assert plan.exception_ids == tuple(ids)
    with store.engine.begin() as conn:
        conn.execute(update(exceptions).values(suggested_action="retry"))
        conn.execute(update(exceptions).where(exceptions.c.id == ids[0]).values(suggested_action="resolve"))
    retry = plan_bulk(store, config, action="retry", filters=shown.as_mapping(), actor="alex")
    assert retry.caveat == "Another action is suggested for 1 of them (resolve 1): retry will likely fail there."
    assert plan.caveat is None
    none = plan_bulk(store, config, action="resolve", filters={"category": "validation"}, actor="alex")
    assert none.count == 0
    with pytest.raises(ValueError, match="unknown filter 'colour'; filter by ids or statuses, categories"):
        plan_bulk(store, config, action="resolve", filters={"colour": "red"}, actor="alex")


def test_a_bulk_plan_leaves_out_what_its_action_would_refuse(store: Store) -> None:
    config = load_config(environ={})
    ids = seed_exceptions(store, 4)
    with store.engine.begin() as conn:
        conn.execute(update(exceptions).where(exceptions.c.id.in_(ids[:2])).values(status="resolved"))
        conn.execute(update(exceptions).where(exceptions.c.id == ids[2]).values(status="ignored"))
    every = {"category": "timeout", "status": ["open", "retrying", "resolved", "ignored"]}
    retry = plan_bulk(store, config, action="retry", filters=every, actor="alex")
    assert (retry.count, retry.left_out_text) == (2, "Left out: 2 already resolved.")
    ignore = plan_bulk(store, config, action="ignore", filters=every, actor="alex")
    assert ignore.exception_ids == (ids[3],) and ignore.left_out == {"already resolved": 2, "already ignored": 1}
    assign = plan_bulk(store, config, action="assign", filters=every, actor="alex", target="sam")
    assert assign.count == 4 and not assign.left_out


def test_a_bulk_reroute_plan_takes_only_what_a_move_to_the_target_would_fix(store: Store) -> None:
    config = load_config(environ={})
    ids = seed_exceptions(store, 5)
    with store.engine.begin() as conn:
        conn.execute(update(exceptions).values(suggested_action="retry", system="3pl-fastship"))
        conn.execute(update(exceptions).where(exceptions.c.id == ids[0]).values(system="erp"))
        conn.execute(
            update(exceptions).where(exceptions.c.id == ids[1]).values(category="stuck", suggested_action=None)
        )
        conn.execute(update(exceptions).where(exceptions.c.id == ids[2]).values(category="validation"))
    with pytest.raises(
        ValueError, match="name the partner to reroute to; choose from 3pl-fastship, 3pl-parcelpro, wms"
    ):
        plan_bulk(store, config, action="reroute", filters={}, actor="alex")
    with pytest.raises(ValueError, match="erp is not a warehouse or 3PL; choose from 3pl-fastship, 3pl-parcelpro"):
        plan_bulk(store, config, action="reroute", filters={}, actor="alex", target="erp")
    plan = plan_bulk(store, config, action="reroute", filters={}, actor="alex", target="3pl-parcelpro")
    assert (plan.exception_ids, plan.target) == (tuple(ids[3:]), "3pl-parcelpro")
    assert plan.left_out == {
        "not at a warehouse or 3PL": 1,
        "not reroutable (stuck)": 1,
        "not reroutable (validation)": 1,
    }
    assert (
        plan_bulk(store, config, action="reroute", filters={}, actor="alex", target="3pl-fastship").left_out[
            "already with 3pl-fastship"
        ]
        == 2
    )
