"""Several `serve` instances on one PostgreSQL database run each scheduled job one at a time."""

from __future__ import annotations

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
