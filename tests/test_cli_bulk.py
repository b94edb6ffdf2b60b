"""`syncwatch bulk`: the plan first, then the job with --yes; bad input gets one sentence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from actions_support import seed_exceptions
from sqlalchemy import select

from actions.services import close_all
from syncwatch.cli import main
from syncwatch.store import Store
from syncwatch.store.schema import audit_log, exceptions, transactions


@pytest.fixture
def seeded(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'bulk.db'}"
    store = Store.open(url)
    store.upgrade()
    seed_exceptions(store, 4)
    store.close()
    return url


def statuses(url: str) -> list[str]:
    store = Store.open(url)
    with store.engine.connect() as conn:
        found = list(conn.execute(select(exceptions.c.status).order_by(exceptions.c.id)).scalars())
    store.close()
    return found


def test_without_yes_it_only_plans(seeded: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bulk", "resolve", "--as", "alex", "--note", "n", "--category", "timeout", "--db", seeded]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "Plan: resolve 4 exceptions.",
        "Of them: 4 timeout.",
        "  erp: 4",
        "Run again with --yes to start.",
    ]
    assert statuses(seeded) == ["open"] * 4
    assert main(["bulk", "retry", "--as", "alex", "--json", "--db", seeded]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["count"], plan["suggested"]) == (4, {"none": 4})
    assert plan["caveat"] == "4 of them have no failed request to send again: retry will likely fail there."


def test_with_yes_it_runs_every_match_and_prints_the_job(seeded: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bulk", "resolve", "--as", "alex", "--note", "fixed upstream", "--ids", "exc-1,exc-2", "--yes", "--json"]
    assert main([*args, "--db", seeded]) == 0
    close_all()
    job = json.loads(capsys.readouterr().out)
    assert (job["status"], job["succeeded"], job["failed"], job["note"]) == ("finished", 2, 0, "fixed upstream")
    assert statuses(seeded) == ["open", "resolved", "resolved", "open"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["resolve", "--as", "alex"], 2, "resolve needs --note"),
        (["resolve", "--as", "alex", "--note", "   ", "--yes"], 2, "resolve needs --note"),  # blank is no note
        (["retry", "--as", "alex", "--to", "sam"], 2, "--to names an assignee or a partner to reroute to; retry takes"),
        (["reroute", "--as", "alex"], 2, "reroute needs --to, the warehouse or 3PL to move the orders to."),
        (
            ["reroute", "--as", "alex", "--to", "erp"],
            2,
            "erp is not a warehouse or 3PL; choose from 3pl-fastship, 3pl-parcelpro, wms.",
        ),
        (["reroute", "--as", "sam", "--to", "wms", "--yes"], 1, "only a lead may run bulk jobs, and sam is an agent"),
        (
            ["assign", "--as", "alex", "--to", "kim"],
            2,
            "kim is an executive, who cannot work exceptions; assign an agent or a lead.",
        ),
        (["retry", "--as", "alex", "--opened-after", "yesterday"], 2, "opened after 'yesterday' is not a time like"),
        (["retry", "--as", "alex", "--category", "valdation"], 2, "no category 'valdation'; choose from validation,"),
        (["ignore", "--as", "sam", "--note", "n", "--yes"], 1, "only a lead may run bulk jobs, and sam is an agent"),
        (["ignore", "--as", "sam", "--note", "n"], 1, "only a lead may run bulk jobs, and sam is an agent"),
        (["resolve", "--as", "sam"], 1, "only a lead may run bulk jobs, and sam is an agent"),
    ],
)
def test_bad_requests_get_one_sentence_and_change_nothing(
    seeded: str, capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    assert main(["bulk", *args, "--db", seeded]) == code
    assert message in capsys.readouterr().err
    assert statuses(seeded) == ["open"] * 4


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{bad", "argument --payload: the argument is not JSON (Expecting property name"),
        ("@nowhere.json", "argument --payload: cannot read nowhere.json: No such file or directory"),
        ("[1, 2]", "argument --payload: the argument is JSON but not an object"),
    ],
)
def test_a_retry_body_that_is_not_a_json_object_gets_one_line_not_a_traceback(
    seeded: str, capsys: pytest.CaptureFixture[str], payload: str, message: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["retry", "exc-1", "--as", "alex", "--payload", payload, "--db", seeded])
    said = capsys.readouterr().err
    assert exit_.value.code == 2 and message in said and "Traceback" not in said, said
    assert statuses(seeded) == ["open"] * 4


def test_replay_refuses_what_is_not_a_dead_letter(seeded: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "exc-1", "--as", "alex", "--db", seeded]) == 1
    close_all()
    said = capsys.readouterr().err
    assert said.startswith("Replay re-delivers a dead-lettered message; this exception is timeout."), said
    assert statuses(seeded) == ["open"] * 4


def last_audit(url: str):  # type: ignore[no-untyped-def]
    store = Store.open(url)
    try:
        with store.engine.connect() as conn:
            return conn.execute(select(audit_log).order_by(audit_log.c.id.desc())).first()
    finally:
        store.close()


def test_a_bulk_job_refused_for_the_role_is_in_the_audit_log(seeded: str) -> None:
    assert main(["bulk", "ignore", "--as", "sam", "--note", "n", "--category", "timeout", "--db", seeded]) == 1
    row = last_audit(seeded)
    assert row is not None and (row.actor, row.action, row.result) == ("sam", "bulk ignore", "refused")
    assert row.detail["reason"] == "only a lead may run bulk jobs, and sam is an agent"
    assert "timeout" in row.request_summary


def test_a_name_not_in_the_config_is_audited_as_no_user_not_as_an_executive(seeded: str) -> None:
    """`--as nobody` may only read, as an executive may; the audit log must not say one acted."""
    assert main(["resolve", "exc-0", "--as", "nobody", "--note", "n", "--db", seeded]) == 1
    row = last_audit(seeded)
    assert row is not None and (row.actor, row.role, row.result) == ("nobody", "not a user", "refused")


def test_a_filter_naming_no_configured_channel_says_so(seeded: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bulk", "retry", "--as", "alex", "--channel", "MARKETPLACE-B2B", "--db", seeded]) == 0
    said = capsys.readouterr().out
    assert "Plan: retry 0 exceptions." in said and "Nothing matches; nothing to do." in said
    assert "No channel is called 'MARKETPLACE-B2B'; the config's are: marketplace-amz, marketplace-b2b." in said


def test_a_job_with_failures_says_why_they_failed(seeded: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI printed only '29 failed', while the audit log knew 'already assigned to sam'."""
    args = ["bulk", "retry", "--as", "alex", "--ids", "exc-1", "--yes", "--db", seeded]
    assert main(args) == 1
    close_all()
    said = capsys.readouterr().out
    assert "Plan" not in said and "0 succeeded, 1 failed.\nWhy they failed:\n  1 × " in said, said


def test_a_job_whose_process_died_is_closed_and_says_why(seeded: str) -> None:
    from datetime import timedelta

    from actions.jobs import STALLED_AFTER, close_stalled_jobs
    from actions.services import services_for
    from syncwatch.config import load_config
    from syncwatch.model import utcnow
    from syncwatch.store.schema import action_jobs

    store = Store.open(seeded)
    try:
        stale = utcnow() - STALLED_AFTER - timedelta(minutes=1)
        job = {"kind": "retry", "actor": "alex", "filters": {}, "partners": {}, "exception_ids": [], "total": 3}
        with store.engine.begin() as conn:
            conn.execute(
                action_jobs.insert(),
                [
                    {**job, "id": "job-dead", "status": "running", "created_at": stale, "updated_at": stale},
                    {**job, "id": "job-alive", "status": "running", "created_at": stale, "updated_at": utcnow()},
                ],
            )
        assert close_stalled_jobs(services_for(store, load_config(environ={}))) == ["job-dead"]
        with store.engine.connect() as conn:
            status = dict(conn.execute(select(action_jobs.c.id, action_jobs.c.status)).all())
        assert status == {"job-dead": "cancelled", "job-alive": "running"}
        assert last_audit(seeded).detail["reason"] == "no progress for 10 min: the process running it ended"
    finally:
        store.close()
        close_all()


def test_items_done_by_others_after_the_plan_are_not_counted_as_the_jobs(
    seeded: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """'2 succeeded' told a lead the job fixed two exceptions that agents had fixed before it got there."""
    import actions.api
    from actions.ledger import record_done
    from syncwatch.model import utcnow
    from syncwatch.store.schema import exceptions as exception_table

    planned = actions.api.plan_bulk

    def meanwhile(store: Store, *args: Any, **kwargs: Any) -> Any:
        plan = planned(store, *args, **kwargs)
        now = utcnow()
        with store.engine.begin() as conn:  # sam's retry of exc-1 went through; sam resolved exc-2 by hand
            record_done(conn, "exc-1", "retry", "sam", {}, {"steps": ["POST /sales-orders at erp: 201"]}, now)
            record_done(conn, "exc-2", "resolve", "sam", {"note": "n"}, {}, now)
            conn.execute(
                exception_table.update().where(exception_table.c.id.in_(("exc-1", "exc-2"))), {"status": "resolved"}
            )
        return plan

    monkeypatch.setattr(actions.api, "plan_bulk", meanwhile)
    assert main(["bulk", "retry", "--as", "alex", "--ids", "exc-1,exc-2", "--yes", "--db", seeded]) == 0
    close_all()
    said = capsys.readouterr().out
    assert said.startswith("Job job-"), said
    assert said.endswith(" finished: 0 succeeded, 0 failed, 2 already done (1 already resolved, 1 already retried).\n")


def test_a_bulk_reroute_plan_names_the_target_and_what_it_leaves_out(
    seeded: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store.open(seeded)
    with store.engine.begin() as conn:
        conn.execute(exceptions.update(), {"suggested_action": "reroute", "category": "partner_unavailable"})
        conn.execute(exceptions.update().where(exceptions.c.id.in_(("exc-0", "exc-1"))), {"system": "3pl-fastship"})
        conn.execute(exceptions.update().where(exceptions.c.id == "exc-2"), {"system": "3pl-parcelpro"})
        conn.execute(transactions.update(), {"sla_state": "breached"})  # the down 3PL held them past their promise
    store.close()
    assert main(["bulk", "reroute", "--as", "alex", "--to", "3pl-parcelpro", "--db", seeded]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "Plan: reroute 2 exceptions to 3pl-parcelpro.",
        "Of them: 2 partner unavailable; the orders of 2 are already past their SLA,"
        " which 3pl-parcelpro takes over late.",
        "Left out: 1 already with 3pl-parcelpro, 1 not at a warehouse or 3PL.",
        "  3pl-fastship: 2",
        "Run again with --yes to start.",
    ]


def test_a_bulk_reroute_leaves_out_orders_that_have_shipped(seeded: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A shipped order moved to another 3PL is fulfilled twice: the plan leaves it out, and says so."""
    store = Store.open(seeded)
    with store.engine.begin() as conn:
        moved = {"suggested_action": "reroute", "category": "timeout", "system": "3pl-fastship"}
        conn.execute(exceptions.update(), moved)
        conn.execute(transactions.update(), {"current_stage": "shipped"})
    store.close()
    assert main(["bulk", "reroute", "--as", "alex", "--to", "3pl-parcelpro", "--db", seeded]) == 0
    said = capsys.readouterr().out
    assert "Plan: reroute 0 exceptions to 3pl-parcelpro." in said
    assert "Left out: 4 already past its partner (shipped)." in said, said
