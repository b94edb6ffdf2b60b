"""Retention on the sample week, on each engine: a transaction goes whole or not at all, what is
kept re-derives to exactly what it was, and what the correlator has not read never goes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_support import syncwatch
from sqlalchemy import delete, func, select

from correlator.passes import CHECKPOINT, Correlator
from syncwatch.commands.serve import build_scheduler
from syncwatch.config import load_config
from syncwatch.store import Checkpoint, QuarantineItem, Store
from syncwatch.store.actions import append_audit
from syncwatch.store.retention import prune
from syncwatch.store.schema import (
    alerts,
    audit_log,
    business_keys,
    observations,
    quarantine,
    transaction_keys,
    transactions,
)

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"
AS_OF = datetime(2026, 11, 8, 23, 59, tzinfo=UTC)
HORIZON = datetime(2026, 11, 6, tzinfo=UTC)  # splits the week: about half its orders were last seen before
DERIVED = ("id", "type", "status", "sla_state", "current_stage", "stage_at_fault", "stages", "started_at")
DERIVED += ("last_seen_at", "observation_count", "lines", "channel", "partner", "customer", "order_value")


@pytest.fixture
def week(db_url: str) -> Iterator[Store]:
    """The sample week ingested and correlated as of its end."""
    files = sorted(str(p) for p in SAMPLE_DATA.rglob("*") if p.suffix in (".jsonl", ".log"))
    files = [f for f in files if not f.endswith("ground_truth.jsonl")]
    for args in (("db", "upgrade", "--db", db_url), ("ingest", "--db", db_url, *files)):
        subprocess.run([sys.executable, "-m", "syncwatch", *args], check=True, capture_output=True, timeout=300)
    store = Store.open(db_url)
    correlate(store)
    yield store
    store.close()


def correlate(store: Store) -> None:
    Correlator(store, load_config(environ={}), clock=lambda: AS_OF).run_pass()


def derived(store: Store) -> dict[str, tuple[Any, ...]]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(*(transactions.c[name] for name in DERIVED)))
        return {row[0]: tuple(row) for row in rows}


def observation_ids(store: Store) -> set[int]:
    with store.engine.connect() as conn:
        return set(conn.execute(select(observations.c.id)).scalars())


def correlated_up_to(store: Store) -> int:
    read = store.checkpoint(CHECKPOINT)
    assert read is not None
    return read.position


def test_what_is_kept_re_derives_to_exactly_what_it_was(week: Store) -> None:
    before = derived(week)
    old = {tid for tid, row in before.items() if row[DERIVED.index("last_seen_at")] < HORIZON}
    assert 0 < len(old) < len(before), "the horizon must split the week for this test to mean anything"
    pruned = prune(week, HORIZON, correlated_up_to(week))
    assert pruned.transactions == len(old) and pruned.observations > 0
    kept = derived(week)
    assert set(kept) == set(before) - old
    # From scratch, the observations left make exactly the transactions kept: none lost a member,
    # and no pruned order comes back from leftovers.
    with week.writing() as conn:
        conn.execute(delete(transactions))
    week.save_checkpoint(Checkpoint(CHECKPOINT, 0))
    correlate(week)
    assert derived(week) == kept


def test_a_pruned_transaction_leaves_no_keys_exceptions_or_observations(week: Store) -> None:
    with week.engine.connect() as conn:
        c = transaction_keys.c
        old_keys = set(
            conn.execute(
                select(c.key_type, c.value)
                .join(transactions)
                .where(transactions.c.last_seen_at < HORIZON, c.key_type != "trace")
            ).all()
        )
    prune(week, HORIZON, correlated_up_to(week))
    with week.engine.connect() as conn:
        left = set(conn.execute(select(business_keys.c.key_type, business_keys.c.value)).all())
        left_keys = set(conn.execute(select(transaction_keys.c.key_type, transaction_keys.c.value)).all())
        orphans = conn.execute(
            select(func.count())
            .select_from(transaction_keys)
            .where(transaction_keys.c.transaction_id.not_in(select(transactions.c.id)))
        ).scalar_one()
    assert old_keys and not old_keys & left and not old_keys & left_keys and orphans == 0


def test_what_the_correlator_has_not_read_never_goes(week: Store) -> None:
    ids = sorted(observation_ids(week))
    up_to = ids[len(ids) // 2]
    prune(week, AS_OF + timedelta(days=1), up_to)  # everything is old enough
    assert observation_ids(week) == {oid for oid in ids if oid > up_to}


def test_a_dry_run_counts_what_the_prune_then_drops_and_deletes_nothing(week: Store) -> None:
    counts = week.counts()
    would = prune(week, HORIZON, correlated_up_to(week), dry_run=True)
    assert week.counts() == counts
    did = prune(week, HORIZON, correlated_up_to(week))
    assert (would.transactions, would.exceptions, would.observations) == (
        did.transactions,
        did.exceptions,
        did.observations,
    )
    assert week.counts()["observations"] == counts["observations"] - did.observations
    assert week.counts()["exceptions"] == counts["exceptions"] - did.exceptions
    again = prune(week, HORIZON, correlated_up_to(week))
    assert (again.transactions, again.observations) == (0, 0), "pruning twice drops nothing more"


def test_quarantine_and_alerts_go_by_their_age_and_the_audit_log_stays(week: Store) -> None:
    week.quarantine(
        [QuarantineItem("old.log", "not a log line", b"old"), QuarantineItem("new.log", "not a log line", b"new")]
    )
    with week.writing() as conn:
        conn.execute(
            quarantine.update().where(quarantine.c.source == "old.log").values(received_at=HORIZON - timedelta(days=1))
        )
        append_audit(
            conn,
            {
                "at": HORIZON - timedelta(days=30),
                "actor": "sam",
                "action": "retry",
                "result": "succeeded",
                "detail": {},
            },
        )
        first_alert = conn.execute(select(func.min(alerts.c.id))).scalar_one()
        conn.execute(alerts.update().where(alerts.c.id == first_alert).values(created_at=HORIZON - timedelta(hours=1)))
    counts = week.counts()
    pruned = prune(week, HORIZON, correlated_up_to(week))
    assert (pruned.quarantine, pruned.alerts) == (1, 1)
    with week.engine.connect() as conn:
        assert list(conn.execute(select(quarantine.c.source)).scalars()) == ["new.log"]
        assert conn.execute(select(func.count()).select_from(audit_log)).scalar_one() == counts["audit_log"] == 1
    assert week.counts()["alerts"] == counts["alerts"] - 1


def test_the_cli_says_what_went_and_refuses_a_meaningless_age(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'prune.db'}"
    assert syncwatch("db", "upgrade", "--db", db).returncode == 0
    files = sorted(str(p) for p in SAMPLE_DATA.rglob("*.jsonl") if p.name != "ground_truth.jsonl")
    assert syncwatch("ingest", "--db", db, *files).returncode == 0
    assert syncwatch("correlate", "--db", db, "--now", "2026-11-08T23:59:00Z").returncode == 0
    dry = syncwatch("db", "prune", "--db", db, "--older-than", "1", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith("would prune ") and "older than 1 day\n" in dry.stdout
    done = syncwatch("db", "prune", "--db", db, "--older-than", "1")
    assert done.stdout == dry.stdout.replace("would prune", "pruned", 1)
    assert (
        "0 transactions (with 0 exceptions), 0 observations"
        in syncwatch("db", "prune", "--db", db, "--older-than", "1").stdout
    )
    wrong = syncwatch("db", "prune", "--db", db, "--older-than", "-3")
    assert wrong.returncode == 2 and "expected a whole number of days, 1 or more, got '-3'" in wrong.stderr
    kept = syncwatch("db", "prune", "--db", db, env={"SYNCWATCH_RETENTION_DAYS": "0"})
    assert kept.stdout.startswith("retention_days is 0, so nothing is pruned")


def test_serve_prunes_on_a_schedule_unless_retention_is_off(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'jobs.db'}")
    store.upgrade()
    jobs = {job.id: job for job in build_scheduler(load_config(environ={}), store).get_jobs()}
    assert jobs["retention"].trigger.interval == timedelta(hours=6)
    off = load_config(environ={"SYNCWATCH_RETENTION_DAYS": "0"})
    assert "retention" not in {job.id for job in build_scheduler(off, store).get_jobs()}
    store.close()
