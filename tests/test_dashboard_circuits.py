"""A partner whose automatic retries are paused (its circuit, ``actions.breaker``) is said on Operations
for a lead, on its exceptions for an agent and over the endpoints, while it lasts: opened by the retry
policy against the live simulator with the 3PL taken down, then closed when it comes back."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from actions_support import world
from streamlit.testing.v1 import AppTest
from test_actions_breaker import FASTSHIP, fail, failed_at_fastship, outage, policy_pass
from test_dashboard_pages import APP, open_app, read, texts

from actions import breaker, ledger, roles
from actions.services import close_all, services_for
from syncwatch.config import load_config
from syncwatch.model import utcnow
from syncwatch.store import Store
from syncwatch.store import queries as q

POLICY = '\n[actions.policy]\nmax_attempts = 10\nbackoff = "1s"\nbreaker_failures = 3\nbreaker_cooldown = "5m"\n'
PAUSED = f"Automatic retries to {FASTSHIP} are paused: it stopped answering them."


def detail(monkeypatch: pytest.MonkeyPatch, db: str, exception_id: str, user: str = "sam") -> AppTest:
    """The Exceptions page with ``exception_id`` open, as a link to it opens it."""
    monkeypatch.setenv("SYNCWATCH_DB", db)
    monkeypatch.setenv("SYNCWATCH_DASHBOARD_DEMO_USER", user)
    monkeypatch.delenv("SYNCWATCH_CONFIG", raising=False)
    monkeypatch.delenv("SYNCWATCH_DASHBOARD_USERS", raising=False)
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("exceptions.py")
    at.query_params["exception"] = exception_id
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def warnings(at: AppTest) -> list[str]:
    return [read(w.value) for w in at.warning]


def test_a_partner_down_has_its_automatic_retries_shown_paused_until_it_answers(
    run_collector: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, only /metrics, log lines and the audit log said so: Operations showed the 3PL's backlog
    and an agent saw its exceptions' automatic retries stop, without a word why."""
    with world(run_collector, tmp_path, [], POLICY) as w:
        db = str(w.store.engine.url)
        outage(w, "down")
        failed = failed_at_fastship(w, 5)
        t0 = max(utcnow(), max(r["last_seen_at"] for r in failed) + timedelta(seconds=2))
        assert policy_pass(w, t0) == 3, "three failed in a row, and the circuit opened"

        at = open_app(monkeypatch, db, "operations.py")
        [box] = [x for x in warnings(at) if "paused" in x]
        assert box.startswith(f"**{PAUSED}**"), box
        assert f"**{FASTSHIP}**: paused since {t0:%a %d %b %H:%M} UTC" in box
        assert "Why: 3 automatic retries to it in a row failed, the last: " in box and "503" in box
        assert f"a test every 5 m: the next goes after {t0 + timedelta(minutes=5):%H:%M} UTC" in box
        assert "People's own retries, reroutes and bulk jobs are not paused" in box
        links = {p.proto.label: (p.proto.page, p.proto.query_string) for p in at.get("page_link")}
        assert links[f"Open the exceptions waiting for {FASTSHIP}"] == ("exceptions", f"system={FASTSHIP}")

        with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
            (held,) = conn.execute(
                "SELECT id FROM exceptions e WHERE system = ? AND status = 'open' AND NOT EXISTS "
                "(SELECT 1 FROM actions a WHERE a.exception_id = e.id) LIMIT 1",
                (FASTSHIP,),
            ).fetchone()
        at = detail(monkeypatch, db, held)
        [note] = [w for w in warnings(at) if "paused" in w]
        assert note.startswith(f"**Automatic retries to {FASTSHIP} are paused while it is down** (since "), note
        assert "3pl-fastship answered 503" in note, "why, in the partner's words"
        assert "So this exception gets no automatic retry for now, and none is added to its History." in note
        assert "Your own Retry is not paused: it goes at once." in note
        assert "Retry" in {b.label for b in at.button}, "and the button is there"
        assert f"Automatic retries to {FASTSHIP} are paused while it is down" in texts(at), "over the queue too"
        endpoints = texts(open_app(monkeypatch, db, "endpoints.py"))
        assert f"Automatic retries to {FASTSHIP} are paused while it is down" in endpoints, "and over its endpoints"

        assert policy_pass(w, t0 + timedelta(minutes=5)) == 1, "the test retry, still refused"
        box = next(w for w in warnings(open_app(monkeypatch, db, "operations.py")) if "paused" in w)
        assert "1 test retry so far, none answered" in box
        assert f"the next goes after {t0 + timedelta(minutes=10):%H:%M} UTC" in box

        outage(w, "up")
        assert policy_pass(w, t0 + timedelta(minutes=10)) >= 1, "the test retry answered, and the circuit closed"
        assert not [x for x in warnings(open_app(monkeypatch, db, "operations.py")) if "paused" in x]
        at = detail(monkeypatch, db, held)
        assert "paused" not in texts(at), "the notes are gone once it answers"
        assert "paused" not in texts(open_app(monkeypatch, db, "endpoints.py"))
        admin = open_app(monkeypatch, db, "admin.py").dataframe
        audit = next(d.value for d in admin if "action" in d.value.columns)
        assert {"circuit opened", "circuit probe", "circuit closed"} <= set(audit["action"]), "history stays"
    close_all()


@pytest.fixture
def sample_copy(sample_db: str, tmp_path: Path) -> str:
    target = tmp_path / "copy.db"
    with sqlite3.connect(sample_db.removeprefix("sqlite:///")) as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    return f"sqlite:///{target}"


def test_the_partners_error_is_masked_and_shown_as_text(monkeypatch: pytest.MonkeyPatch, sample_copy: str) -> None:
    """The opening quotes the partner's answer: an email in it is masked and a Markdown link stays text."""
    store = Store.open(sample_copy)
    services = services_for(store, load_config(environ={}))
    now = utcnow()
    reason = "erp answered 503: write to ops@erp.example.com, call +44 7700 900123 or see [status](https://evil.example/x.png)"
    outcome = {"partner": "erp", "error": "PartnerUnavailable", "reason": reason, "definitive": True}
    for _ in range(5):
        entry = ledger.Entry(roles.POLICY_ACTOR, roles.POLICY, "retry", "exc-x", "", "failed", {"outcome": outcome})
        with store.writing() as conn:
            ledger.audit(conn, entry, now)
    settings = breaker.Settings(5, timedelta(minutes=5))
    breaker.settle(services, breaker.read(services, now)["erp"], settings, now)
    store.close()
    close_all()

    at = open_app(monkeypatch, sample_copy, "operations.py")
    box = next(w.value for w in at.warning if "paused" in w.value)
    assert "ops@erp.example.com" not in read(box) and "7700 900123" not in read(box), "masked as partner text is"
    assert "\\[status\\]\\(https" in box, "escaped: the browser shows the text, follows no link, loads no image"
    assert "erp answered 503" in read(box)


def test_the_paused_partners_are_read_from_the_circuits_own_entries_on_each_engine(store: Store) -> None:
    """What the pages show, and /metrics says the same: opened (when, why), each probe, then closed."""
    services = services_for(store, load_config(environ={}))
    settings = breaker.Settings(3, timedelta(minutes=5))
    now = utcnow()
    for _ in range(3):
        fail(store, "3pl-acme", now)
    breaker.settle(services, breaker.read(services, now)["3pl-acme"], settings, now)
    [held] = q.held_circuits(store, now).values()
    assert (held.partner, held.opened_at, held.probed_at, held.probes) == ("3pl-acme", now, now, 0)
    assert held.reason == "3 automatic retries to it in a row failed, the last: 3pl-acme answered 503"

    later = now + timedelta(minutes=5)
    circuit = breaker.read(services, later)["3pl-acme"]
    fail(store, "3pl-acme", later)
    breaker.probed(services, circuit, settings, later, "exc-1", ok=False)
    [held] = q.held_circuits(store, later).values()
    assert (held.opened_at, held.probed_at, held.probes) == (now, later, 1)
    assert store.service_gauges(later).circuits == {"3pl-acme": (True, now)}, "as /metrics says"

    answered = later + timedelta(minutes=5)
    fail(store, "3pl-acme", answered, error="PartnerRejected")  # the partner answered the next probe
    breaker.settle(services, breaker.read(services, answered)["3pl-acme"], settings, answered)
    assert q.held_circuits(store, answered) == {}
    assert store.service_gauges(answered).circuits["3pl-acme"][0] is False
    close_all()


def test_the_audit_tab_shows_peoples_entries_apart_from_the_retry_policys(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str
) -> None:
    """A partner down for hours filled the newest 200 entries with automatic retries and probes."""
    store = Store.open(sample_copy)
    now = utcnow()
    with store.writing() as conn:
        ledger.audit(conn, ledger.Entry("sam", roles.LEAD, "note", "exc-1", "called the 3PL", "succeeded"), now)
        for _ in range(3):
            entry = ledger.Entry(roles.POLICY_ACTOR, roles.POLICY, "retry", "exc-2", "", "failed")
            ledger.audit(conn, entry, now)
    store.close()

    def shown(who: str | None) -> set[str]:
        at = open_app(monkeypatch, sample_copy, "admin.py")
        if who:
            next(b for b in at.button_group if b.label == "Who").set_value(who).run()
        assert not at.exception, [e.value for e in at.exception]
        return set(next(d.value for d in at.dataframe if "request_summary" in d.value.columns)["actor"])

    assert {"sam", roles.POLICY_ACTOR} <= shown(None)
    assert roles.POLICY_ACTOR not in shown("people") and "sam" in shown("people")
    assert shown("the retry policy") == {roles.POLICY_ACTOR}
