"""`serve`'s scheduled jobs: several instances on one PostgreSQL database run each one at a time,
and a job that keeps failing the same way says so once, not every second."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncwatch.commands.serve import Job, one_at_a_time
from syncwatch.store import Store


def _another_instance(store: Store) -> Store:
    """The same database through an engine of its own, as a second `serve` would have."""
    return Store.open(store.engine.url.render_as_string(hide_password=False))


def test_a_job_held_elsewhere_is_skipped_on_postgresql_and_runs_once_released(store: Store) -> None:
    runs: list[str] = []
    job = one_at_a_time(store, Job("alerts", lambda: runs.append("ran"), 1.0))
    other_instance = _another_instance(store)
    try:
        with other_instance.exclusive("job:alerts") as held:
            assert held
            job()
        skipped_while_held = runs == []
        job()
    finally:
        other_instance.close()
    assert skipped_while_held is (store.dialect == "postgresql")
    assert runs[-1] == "ran" and len(runs) == (1 if store.dialect == "postgresql" else 2)


def test_a_lock_is_released_when_the_job_fails(store: Store) -> None:
    def failing() -> None:
        raise RuntimeError("partner down")

    with pytest.raises(RuntimeError):
        one_at_a_time(store, Job("sla", failing, 1.0))()
    other_instance = _another_instance(store)
    try:
        with other_instance.exclusive("job:sla") as held:
            assert held
    finally:
        other_instance.close()


def test_a_job_failing_the_same_way_every_second_logs_it_once_then_that_it_works_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from syncwatch.commands.serve import _logged

    locked = tmp_path / "access.log"
    locked.write_text("")

    def poll() -> None:
        if outcomes.pop(0):
            raise PermissionError(13, "Permission denied", str(locked))

    outcomes = [True, True, True, False, True]
    job = _logged(poll, "tail:access.log")
    with caplog.at_level("INFO", logger="syncwatch.commands.serve"):
        for _ in range(5):
            job()
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    denied = f"[Errno 13] Permission denied: '{locked}'"
    assert said == [
        ("WARNING", f"job tail:access.log cannot read its file: {denied}; it tries again at every interval"),
        ("INFO", "job tail:access.log works again"),
        ("WARNING", f"job tail:access.log cannot read its file: {denied}; it tries again at every interval"),
    ]


def test_quiet_systems_are_first_judged_a_quarter_of_an_hour_after_serve_starts(tmp_path: Path) -> None:
    """While serve was down nothing could arrive; partners get time to resend before silence is called."""
    from datetime import UTC, datetime, timedelta

    from syncwatch.commands.serve import build_scheduler
    from syncwatch.config import load_config

    store = Store.open(f"sqlite:///{tmp_path / 'jobs.db'}")
    store.upgrade()
    try:
        jobs = {job.id: job for job in build_scheduler(load_config(environ={}), store).get_jobs()}
    finally:
        store.close()
    soon = datetime.now(UTC) + timedelta(seconds=5)
    assert jobs["correlate"].next_run_time <= soon
    assert jobs["quiet"].next_run_time >= soon + timedelta(minutes=14)
    # apscheduler's own warnings name the job, and a run delayed by a busy start is run late, not skipped
    assert jobs["correlate"].name == "correlate" and jobs["correlate"].misfire_grace_time is None


def test_a_job_still_running_is_said_skipped_once_a_while_not_at_every_tick(tmp_path: Path) -> None:
    """A pass held up by a locked table made apscheduler warn every five seconds for as long."""
    import logging

    from syncwatch.commands.serve import SCHEDULER_LOG, SkipsNowAndThen

    def skipped(job: str, tick: int = 0) -> logging.LogRecord:
        """As apscheduler writes it: the job, its trigger and its next run time, which moves on."""
        shown = f"{job} (trigger: interval[0:00:01], next run at: 2026-11-28 00:46:{tick:02d} UTC)"
        text = 'Execution of job "%s" skipped: maximum number of running instances reached (%d)'
        return logging.LogRecord("syncwatch.scheduler", logging.WARNING, __file__, 1, text, (shown, 1), None)

    thinned = SkipsNowAndThen(every_s=600)
    told = [thinned.filter(skipped("correlate", tick)) for tick in range(5)]
    assert told == [True, False, False, False, False] and thinned.filter(skipped("alerts"))
    other = logging.LogRecord("syncwatch.scheduler", logging.WARNING, __file__, 1, "Run time of job missed", None, None)
    assert thinned.filter(other) and any(isinstance(f, SkipsNowAndThen) for f in SCHEDULER_LOG.filters)
    adding = "Adding job tentatively -- it will be properly scheduled when the scheduler starts"
    assert not thinned.filter(logging.LogRecord("syncwatch.scheduler", logging.INFO, __file__, 1, adding, None, None))


def test_the_start_line_says_where_retries_go_only_while_every_partner_is_on_this_machine(tmp_path: Path) -> None:
    from syncwatch.commands.serve import _partners_note
    from syncwatch.config import load_config

    packaged = load_config(None, {}, environ={})
    assert "as the simulator's are" in _partners_note(packaged)
    own = tmp_path / "own.toml"
    own.write_text("[partners.acme-3pl]\nkind = '3pl'\nbase_url = 'https://api.acme.example'\n")
    assert _partners_note(load_config(str(own), {}, environ={})) == ""
