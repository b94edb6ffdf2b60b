"""An action is history: it outlives the exception it acted on (migration 0005)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, insert, select

from syncwatch.store import Store, migrate
from syncwatch.store.schema import actions, exceptions, transactions

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


def _exception_with_a_retry(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            insert(transactions).values(
                id="t1", type="order", sla_state="on_track", stages=[], started_at=NOW, last_seen_at=NOW,
                observation_count=1, updated_at=NOW,
            )
        )  # fmt: skip
        conn.execute(
            insert(exceptions).values(
                id="e1", transaction_id="t1", category="timeout", status="open", system="erp", summary="ERP timed out",
                context={}, opened_at=NOW, last_seen_at=NOW, updated_at=NOW,
            )
        )  # fmt: skip
        conn.execute(
            insert(actions).values(
                id="a1", exception_id="e1", kind="retry", actor="sam", idempotency_key="k1", status="succeeded",
                request={}, outcome={"status": 201}, requested_at=NOW,
            )
        )  # fmt: skip


def test_deleting_an_exception_keeps_its_actions(store: Store) -> None:
    _exception_with_a_retry(store)
    with store.engine.begin() as conn:
        conn.execute(delete(exceptions).where(exceptions.c.id == "e1"))
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
    assert [tuple(row) for row in kept] == [("a1", "e1")]
