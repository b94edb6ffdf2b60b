"""On PostgreSQL, two ingest transactions may take observation ids in one order and commit in the
other. The correlator reads past its checkpoint by id, so an observation committed late with a
smaller id would never be correlated; ingest transactions are serialised so ids follow commits."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

from observation_support import span
from sqlalchemy import select

from correlator.passes import Correlator
from syncwatch.config import load_config
from syncwatch.model import Observation
from syncwatch.store import Store
from syncwatch.store.schema import transaction_keys
from syncwatch.store.writes import write_observations

AT = datetime(2026, 11, 26, 9, tzinfo=UTC)


def capture(order: str) -> Observation:
    return span(int(order[-1]), "POST /orders", "marketplace-amz", AT, marketplace_order=order)


def test_an_observation_that_commits_late_is_still_correlated(pg_server: Callable[[], str]) -> None:
    store = Store.open(pg_server())
    store.upgrade()
    correlator = Correlator(store, load_config(environ={}))
    holding, release = threading.Event(), threading.Event()

    def slow_writer() -> None:
        with store.writing() as conn:
            write_observations(conn, [capture("111-0000000-0000001")])
            holding.set()
            release.wait(30)

    first = threading.Thread(target=slow_writer)
    first.start()
    holding.wait(30)
    second = threading.Thread(target=store.write_observations, args=([capture("111-0000000-0000002")],))
    second.start()
    second.join(timeout=1)  # without serialised ingest, this one commits now, ahead of the first
    correlator.run_pass()
    release.set()
    first.join()
    second.join()
    correlator.run_pass()
    with store.engine.connect() as conn:
        orders = set(conn.execute(select(transaction_keys.c.value)).scalars())
    store.close()
    assert {"111-0000000-0000001", "111-0000000-0000002"} <= orders
