"""The circuit per partner for automatic retries: a 3PL taken down with `syncwatch sim outage`, its
open exceptions retried by the policy job against the live simulator, the state read back from the
store by a fresh process's services (a restart), on SQLite and on PostgreSQL."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from actions_support import World, world
from sqlalchemy import select

from actions import breaker, ledger, roles
from actions.api import perform, run
from actions.jobs import policy_jobs, run_policy
from actions.services import close_all, services_for
from syncwatch.cli import main
from syncwatch.config import load_config
from syncwatch.metrics import ServiceMetrics
from syncwatch.model import utcnow
from syncwatch.store import Store
from syncwatch.store.schema import actions, audit_log, exceptions

FASTSHIP = "3pl-fastship"
CREATES = f"{FASTSHIP} POST /fulfillment-orders"
POLICY = '\n[actions.policy]\nmax_attempts = 10\nbreaker_failures = 3\nbreaker_cooldown = "5m"\n'


def failed_at_fastship(w: World, count: int) -> list[dict[str, Any]]:
    """Orders until ``count`` of them failed at the 3PL taken down (the network routes some elsewhere)."""
    for _ in range(count * 40):
        with w.store.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(select(exceptions))]
        failed = [r for r in rows if r["system"] == FASTSHIP and r["category"] == "partner_unavailable"]
        if len(failed) >= count:
            return failed
        w.order()
    raise AssertionError(f"fewer than {count} orders failed at {FASTSHIP}")


def outage(w: World, mode: str) -> None:
    assert main(["sim", "outage", FASTSHIP, mode, "--base-port", str(w.base_port)]) == 0


def circuit_changes(w: World) -> list[tuple[str, str]]:
    with w.store.engine.connect() as conn:
        rows = conn.execute(
            select(audit_log.c.action, audit_log.c.target)
            .where(audit_log.c.action.like("circuit %"))
            .order_by(audit_log.c.id)
        )
        return [(action, target) for action, target in rows]


def automatic_attempts(w: World, exception_id: str) -> int:
    with w.store.engine.connect() as conn:
        query = select(actions.c.attempts).where(
            actions.c.exception_id == exception_id, actions.c.actor == roles.POLICY_ACTOR
        )
        return sum(conn.execute(query).scalars())


def policy_pass(w: World, now: datetime) -> int:
    """One pass of the policy job in a process started afresh (the circuit comes from the store
    alone, as after a restart of `serve`, or in another instance); the 3PL's creates it sent."""
    close_all()
    config = load_config(w.config.path, {"db": str(w.store.engine.url)}, environ={})
    before = w.calls(CREATES)
    run_policy(services_for(w.store, config), run, now=now)
    return w.calls(CREATES) - before


def test_a_partner_down_gets_a_few_automatic_retries_then_one_probe_per_cool_down(
    run_collector: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the circuit the first pass sent all six exceptions' retries to the 3PL that is down,
    and every pass after their backoff did it again."""
    caplog.set_level(logging.INFO, logger="actions.breaker")
    with world(run_collector, tmp_path, [], POLICY) as w:
        outage(w, "down")
        failed = failed_at_fastship(w, 6)
        t0 = max(r["last_seen_at"] for r in failed) + timedelta(hours=1)

        assert policy_pass(w, t0) == 3, "three failed in a row, then the circuit opened and held the rest"
        assert circuit_changes(w) == [("circuit opened", FASTSHIP)]
        assert f"circuit opened to {FASTSHIP}: 3 automatic retries to it in a row failed" in caplog.text
        assert "503" in caplog.text, "the log line says why"
        held = [r["id"] for r in failed if automatic_attempts(w, r["id"]) == 0]
        assert len(held) == 3, "held retries are no attempts"
        assert w.store.service_gauges(utcnow()).circuits[FASTSHIP][0] is True

        # A person is never held: their retry goes, fails, and changes no circuit.
        manual = perform(w.store, w.config, action="retry", exception_id=held[0], actor="sam")
        assert manual.action_id is not None and not manual.ok and "503" in manual.message
        assert policy_pass(w, t0 + timedelta(minutes=2)) == 0, "within the cool-down nothing goes"
        assert policy_pass(w, t0 + timedelta(minutes=5)) == 1, "one probe"
        assert policy_pass(w, t0 + timedelta(minutes=6)) == 0
        assert circuit_changes(w)[-1] == ("circuit probe", FASTSHIP)
        assert f"circuit probe to {FASTSHIP}" in caplog.text and "still open" in caplog.text

        outage(w, "up")
        assert policy_pass(w, t0 + timedelta(minutes=9)) == 0, "the next probe waits its cool-down"
        sent = policy_pass(w, t0 + timedelta(minutes=10))
        assert sent == 6, "the probe succeeded, closed the circuit, and the held retries went on at once"
        assert circuit_changes(w)[-2:] == [("circuit probe", FASTSHIP), ("circuit closed", FASTSHIP)]
        assert f"circuit closed to {FASTSHIP}: an automatic retry to it succeeded" in caplog.text
        w.settle()
        assert {w.status(r["id"]) for r in failed} == {"resolved"}
        attempts = [automatic_attempts(w, r["id"]) for r in failed]
        assert sum(attempts) == 3 + 1 + 6, "three that opened it, one probe that failed, six once it closed"
        assert w.store.service_gauges(utcnow()).circuits[FASTSHIP][0] is False
        text = ServiceMetrics(w.store).exposition()[0].decode()
        assert f'syncwatch_partner_circuit_open{{partner="{FASTSHIP}"}} 0.0' in text
    close_all()


def test_with_the_circuit_off_every_due_retry_goes_to_the_partner_that_is_down(
    run_collector: Any, tmp_path: Path
) -> None:
    with world(run_collector, tmp_path, [], POLICY.replace("breaker_failures = 3", "breaker_failures = 0")) as w:
        outage(w, "down")
        failed = failed_at_fastship(w, 5)
        t0 = max(r["last_seen_at"] for r in failed) + timedelta(hours=1)
        assert policy_pass(w, t0) == len(failed) and circuit_changes(w) == []
    close_all()


def fail(store: Store, partner: str, at: datetime, error: str = "PartnerUnavailable") -> None:
    """An automatic retry's outcome as the runner audits it."""
    outcome = {"partner": partner, "error": error, "reason": f"{partner} answered 503", "definitive": True}
    entry = ledger.Entry(roles.POLICY_ACTOR, roles.POLICY, "retry", "exc-1", "", "failed", {"outcome": outcome})
    with store.writing() as conn:
        ledger.audit(conn, entry, at)


def test_the_circuit_is_the_stores_so_every_serve_instance_sees_it(store: Store, db_url: str) -> None:
    """Two instances on one database (PostgreSQL's case): what one opened, the other holds by."""
    other = Store.open(db_url)
    config = load_config(environ={})
    first, second = services_for(store, config), services_for(other, load_config(environ={}))
    settings = breaker.Settings(3, timedelta(minutes=5))
    now = utcnow()
    for _ in range(3):
        fail(store, "3pl-acme", now)
    fail(store, "3pl-other", now)
    circuits = breaker.read(first, now)
    assert circuits["3pl-acme"].failures == 3 and circuits["3pl-other"].failures == 1
    for circuit in circuits.values():
        breaker.settle(first, circuit, settings, now)
    seen = breaker.read(second, now + timedelta(minutes=1))
    assert seen["3pl-acme"].open and not seen["3pl-other"].open
    assert seen["3pl-acme"].holds(settings, now + timedelta(minutes=4))
    assert not seen["3pl-acme"].holds(settings, now + timedelta(minutes=5)), "a probe is due"
    assert other.service_gauges(now).circuits == {"3pl-acme": (True, now)}
    fail(other, "3pl-acme", now, error="PartnerRejected")  # the probe: the partner answered, if with a refusal
    circuit = breaker.read(first, now)["3pl-acme"]
    breaker.settle(first, circuit, settings, now + timedelta(minutes=5))
    assert not breaker.read(second, now)["3pl-acme"].open
    assert store.service_gauges(now).circuits["3pl-acme"][0] is False
    other.close()
    close_all()


def test_a_probe_that_found_its_document_there_does_not_close_the_circuit() -> None:
    """A lookup before a retry (the first try may have landed) answering says the partner's reads work,
    not that it takes orders again: closing on it sent every held retry into the outage."""
    circuit = breaker.Circuit("3pl-acme", open=True, probed_at=utcnow(), failures=5, reason="3pl-acme answered 503")
    circuit.saw({"partner": "3pl-acme", "resolved_without_request": True, "found": "SH-1", "steps": []})
    assert circuit.answered is None and circuit.failures == 5
    circuit.saw({"partner": "3pl-acme", "status_code": 201, "steps": []})
    assert circuit.answered == "an automatic retry to it succeeded"


def test_the_partners_error_is_masked_in_the_audit_log_and_the_log_line(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    services = services_for(store, load_config(environ={}))
    now = utcnow()
    outcome = {
        "partner": "3pl-acme",
        "error": "PartnerUnavailable",
        "reason": "3pl-acme answered 503 for jane.doe@example.com, +44 7700 900123",
    }
    for _ in range(3):
        entry = ledger.Entry(roles.POLICY_ACTOR, roles.POLICY, "retry", "exc-1", "", "failed", {"outcome": outcome})
        with store.writing() as conn:
            ledger.audit(conn, entry, now)
    with caplog.at_level(logging.WARNING, logger="actions.breaker"):
        breaker.settle(services, breaker.read(services, now)["3pl-acme"], breaker.Settings(3, timedelta(1)), now)
    with store.engine.connect() as conn:
        [opened] = conn.execute(select(audit_log).where(audit_log.c.action == "circuit opened")).all()
    written = " ".join([opened.request_summary, str(opened.detail), caplog.text])
    assert "3pl-acme answered 503 for" in written
    assert "jane.doe" not in written and "7700 900123" not in written
    close_all()


def test_a_serve_whose_automatic_retries_are_off_closes_the_circuits_left_open(store: Store) -> None:
    """Otherwise the pages and /metrics said a partner's retries were paused while every retry went."""
    config = load_config(environ={})
    services = services_for(store, config)
    now = utcnow()
    for _ in range(3):
        fail(store, "3pl-acme", now)
    breaker.settle(services, breaker.read(services, now)["3pl-acme"], breaker.Settings(3, timedelta(1)), now)
    assert store.service_gauges(now).circuits == {"3pl-acme": (True, now)}
    list(policy_jobs(config, store))  # the packaged config: [partners] are the simulator's, so retries are off
    assert not breaker.read(services, utcnow())["3pl-acme"].open
    assert store.service_gauges(utcnow()).circuits["3pl-acme"][0] is False
    close_all()
