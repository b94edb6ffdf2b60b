"""The automatic retry policy (a pure decision under a fake clock), its scheduler job, and the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from actions_support import SEEDED_AT, seed_exceptions, world
from sqlalchemy import select, update

from actions.api import run
from actions.jobs import reopen_unconfirmed, run_policy
from actions.ledger import record_done
from actions.policy import History, Policy, decide, wait
from actions.services import close_all, services_for
from syncwatch.cli import main
from syncwatch.commands.serve import build_scheduler
from syncwatch.config import load_config
from syncwatch.model import utcnow
from syncwatch.store import Store
from syncwatch.store import queries as q
from syncwatch.store.schema import audit_log, exceptions

T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
POLICY = Policy(frozenset({"throttled", "timeout"}), 3, timedelta(seconds=30), timedelta(minutes=5), 2.0, 0.2)


def history(attempts: int = 0, category: str = "throttled", retry_after: float | None = None) -> History:
    return History("exc-1", category, T0, attempts, retry_after)


def test_the_first_retry_waits_for_the_backoff_less_at_most_the_jitter() -> None:
    waited = wait(POLICY, history())
    assert timedelta(seconds=24) <= waited <= timedelta(seconds=30)
    assert not decide(POLICY, history(), T0 + waited - timedelta(seconds=1)).retry
    assert decide(POLICY, history(), T0 + waited).retry


def test_backoff_grows_exponentially_up_to_its_maximum() -> None:
    waits = [wait(POLICY, history(n)) for n in range(6)]
    assert waits[1] > waits[0] and waits[2] > waits[1]
    assert all(w <= POLICY.backoff_max for w in waits) and waits[5] >= POLICY.backoff_max * 0.8


def test_retry_after_is_honoured_when_longer_than_the_backoff() -> None:
    decision = decide(POLICY, history(retry_after=600), T0 + timedelta(seconds=300))
    assert not decision.retry and decision.at == T0 + timedelta(seconds=600)


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (history(3), "a person decides"),
        (history(category="validation"), "not retried automatically"),
        (history(1), "it last failed more than 24 h ago"),  # decided two days after T0: a restart after days
    ],
)
def test_after_max_attempts_or_for_data_problems_a_person_decides(item: History, reason: str) -> None:
    decision = decide(POLICY, item, T0 + timedelta(days=2))
    assert not decision.retry and decision.at is None and reason in decision.reason


def test_the_same_try_draws_the_same_jitter() -> None:
    assert wait(POLICY, history(1)) == wait(POLICY, history(1))


def test_the_policy_job_retries_a_transient_failure_once_its_backoff_passed(run_collector: Any, tmp_path: Path) -> None:
    with world(run_collector, tmp_path, ["partner_down=1"], "\n[actions.policy]\nmax_attempts = 1\n") as w:
        w.order()
        exc = w.exception("partner_unavailable")
        services = services_for(w.store, w.config)
        assert run_policy(services, run, now=exc["last_seen_at"]) == []
        later = exc["last_seen_at"] + timedelta(hours=1)
        results = run_policy(services, run, now=later)
        w.settle()
        assert [r.ok for r in results] == [True] and w.status(exc["id"]) == "resolved"
        assert w.audit()[0]["actor"] == "policy:auto-retry"
        assert run_policy(services, run, now=later + timedelta(hours=1)) == []
        assert "actions:auto-retry" in {job.id for job in build_scheduler(w.config, w.store).get_jobs()}
    close_all()


def test_no_automatic_retry_goes_to_the_packaged_partners(tmp_path: Path) -> None:
    """Without [partners] of its own, serve retried failed orders against the simulator's addresses on
    this machine, whatever listened there; a person's retry still may, and the banner says where."""
    store = Store.open(f"sqlite:///{tmp_path / 'packaged.db'}")
    store.upgrade()
    jobs = {job.id for job in build_scheduler(load_config(environ={}), store).get_jobs()}
    store.close()
    assert "actions:watch" in jobs and "actions:auto-retry" not in jobs


def test_the_cli_resolves_with_a_note_and_prints_json(
    run_collector: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with world(run_collector, tmp_path, ["unknown_sku=1"]) as w:
        w.order()
        exc = w.exception("validation")
        where = ["--db", str(w.store.engine.url), "--config", str(tmp_path / "actions.toml")]
        assert main(["resolve", exc["id"], "--as", "kim", "--note", "n", *where]) == 1
        assert main(["note", exc["id"], "--as", "sam", "--note", "SKU added in the ERP", *where]) == 0
        assert w.status(exc["id"]) == "open", "a note changes nothing but the history"
        assert main(["note", exc["id"], "--as", "kim", "--note", "n", *where]) == 1, "an executive may not"
        assert main(["resolve", exc["id"], "--as", "sam", "--note", "fixed in the ERP", "--json", *where]) == 0
        printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert printed["ok"] and printed["status"] == "resolved" and w.status(exc["id"]) == "resolved"


def test_a_retry_the_policy_cannot_build_is_tried_once_a_failure_not_every_pass(store: Store) -> None:
    """A failure with nothing recorded to re-send used to be 'retried' every 15 s forever, each pass
    an audit row and a log line saying it was sent; the next failure of the step is worth a new try."""
    (exception_id,) = seed_exceptions(store, 1, category="timeout")
    services = services_for(store, load_config(environ={}))
    later = SEEDED_AT + timedelta(hours=1)
    first = run_policy(services, run, now=later)
    assert [(r.ok, r.action_id) for r in first] == [(False, None)]
    assert run_policy(services, run, now=later + timedelta(hours=1)) == []
    failed_again = utcnow() + timedelta(seconds=1)  # after the refusal, which the audit log dates by the clock
    with store.engine.begin() as conn:
        conn.execute(update(exceptions).values(last_seen_at=failed_again))
    assert len(run_policy(services, run, now=failed_again + timedelta(hours=1))) == 1
    with store.engine.connect() as conn:
        refusals = conn.execute(select(audit_log.c.result).where(audit_log.c.target == exception_id)).scalars().all()
    assert refusals == ["failed", "failed"]
    close_all()


def test_the_policy_leaves_a_rerouted_exception_to_a_person(store: Store) -> None:
    """Reopened after its reroute went unconfirmed, it was retried, refused and audited every 15 s."""
    (exception_id,) = seed_exceptions(store, 1, category="timeout")
    with store.engine.begin() as conn:
        request = {"partner": "3pl-fastship", "alternate": "wms"}
        record_done(conn, exception_id, "reroute", "alex", request, {"partner_ref": "WMS-1"}, SEEDED_AT)
    services = services_for(store, load_config(environ={}))
    for hours in (1, 2):
        assert run_policy(services, run, now=SEEDED_AT + timedelta(hours=hours)) == []
    with store.engine.connect() as conn:
        assert conn.execute(select(audit_log.c.id).where(audit_log.c.target == exception_id)).all() == []
    close_all()


def test_a_retry_nothing_confirmed_opens_its_exception_again_with_why(store: Store) -> None:
    """A reroute the 3PL took but never confirmed read 'retrying', as if in hand, forever."""
    stale, fresh, untouched = seed_exceptions(store, 3, category="timeout")
    with store.engine.begin() as conn:
        conn.execute(update(exceptions).where(exceptions.c.id.in_([stale, fresh])).values(status="retrying"))
        conn.execute(
            update(exceptions).where(exceptions.c.id == fresh).values(updated_at=SEEDED_AT + timedelta(hours=1))
        )
        record_done(conn, stale, "reroute", "alex", {"target": "3pl-fastship"}, {"steps": ["sent"]}, SEEDED_AT)
    services = services_for(store, load_config(environ={}))
    assert reopen_unconfirmed(services, now=SEEDED_AT + timedelta(minutes=90)) == [stale]
    with store.engine.connect() as conn:
        status = dict(conn.execute(select(exceptions.c.id, exceptions.c.status)).all())
        audited = conn.execute(select(audit_log).where(audit_log.c.target == stale)).one()
    assert status == {stale: "open", fresh: "retrying", untouched: "open"}
    assert (audited.actor, audited.action, audited.result) == ("policy:watch", "reopen", "succeeded")
    why = "nothing confirmed the reroute of Thu 26 Nov 12:00 UTC within 1 h: open again for a person to look at"
    assert audited.detail["reason"] == why
    history = q.exception_actions(store, stale)
    assert list(history["kind"]) == ["reopen", "reroute"] and history["outcome"][0]["reason"] == why
    assert reopen_unconfirmed(services, now=SEEDED_AT + timedelta(hours=3)) == [fresh], "each once"
    close_all()
