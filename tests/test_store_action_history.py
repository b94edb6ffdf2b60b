"""An action is history: it outlives the exception it acted on (migration 0005)."""

from __future__ import annotations

from actions_support import SEEDED_AT, seed_exceptions
from sqlalchemy import delete, insert, select

from syncwatch.store import Store, migrate
from syncwatch.store.schema import actions, exceptions


def _exception_with_a_retry(store: Store) -> None:
    (exception_id,) = seed_exceptions(store, 1)
    with store.engine.begin() as conn:
        conn.execute(
            insert(actions).values(
                id="a1", exception_id=exception_id, kind="retry", actor="sam", idempotency_key="k1",
                status="succeeded", request={}, outcome={"status": 201}, requested_at=SEEDED_AT,
            )
        )  # fmt: skip


def test_deleting_an_exception_keeps_its_actions(store: Store) -> None:
    _exception_with_a_retry(store)
    with store.engine.begin() as conn:
        conn.execute(delete(exceptions))
    with store.engine.connect() as conn:
        kept = conn.execute(select(actions.c.id, actions.c.exception_id, actions.c.outcome)).all()
    assert [tuple(row) for row in kept] == [("a1", None, {"status": 201})]


def test_the_upgrade_keeps_existing_actions(db_url: str) -> None:
    store = Store.open(db_url)
    migrate.upgrade(store.engine, "0004")
    _exception_with_a_retry(store)
    store.upgrade()
    with store.engine.connect() as conn:
        kept = conn.execute(select(actions.c.id, actions.c.exception_id)).all()
    store.close()
    assert [tuple(row) for row in kept] == [("a1", "exc-0")]
