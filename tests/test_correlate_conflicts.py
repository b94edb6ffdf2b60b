"""An observation that names two orders (a bad reference) links its other keys the same way
whatever order the database returns its keys in, so SQLite and PostgreSQL agree."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from observation_support import span
from sqlalchemy import select

from correlator.passes import Correlator
from syncwatch.config import load_config
from syncwatch.store import Store
from syncwatch.store.reads import unlinked_observations
from syncwatch.store.schema import transaction_keys

AT = datetime(2026, 11, 26, 9, tzinfo=UTC)
SALES_ORDER = ("POST /sales-orders", "erp")


def test_a_bad_reference_links_the_same_way_on_every_engine(store: Store) -> None:
    store.write_observations(
        [
            span(1, *SALES_ORDER, AT, marketplace_order="111-0000000-0000001", erp_order="SO-1"),
            span(2, *SALES_ORDER, AT, marketplace_order="111-0000000-0000002", erp_order="SO-2"),
            span(3, *SALES_ORDER, AT, marketplace_order="111-0000000-0000002", erp_order="SO-1", shipment="SH-9"),
        ]
    )
    result = Correlator(store, load_config(environ={})).run_pass()
    tk = transaction_keys.c
    with store.engine.connect() as conn:
        keys = conn.execute(select(tk.transaction_id, tk.key_type, tk.value).where(tk.key_type != "trace")).all()
    by_transaction: dict[str, set[str]] = {}
    for transaction_id, _, value in keys:
        by_transaction.setdefault(transaction_id, set()).add(value)
    assert result.refused_links == 1
    assert sorted(map(sorted, by_transaction.values())) == [
        ["111-0000000-0000001", "SH-9", "SO-1"],
        ["111-0000000-0000002", "SO-2"],
    ]


def test_two_partners_issuing_the_same_document_id_never_merge_two_orders(store: Store) -> None:
    """Each 3PL numbers its own documents: FastShip's 3PL-1 for an Amazon order and ParcelPro's
    3PL-1 for a B2B purchase order are two orders, however the id reads."""
    store.write_observations(
        [
            span(1, *SALES_ORDER, AT, marketplace_order="111-0000000-0000001", erp_order="SO-1"),
            span(2, *SALES_ORDER, AT, po_number="PO-7", erp_order="SO-2"),
            span(3, "POST /fulfillment-orders", "3pl-fastship", AT, erp_order="SO-1", fulfillment_order="3PL-1"),
            span(4, "POST /fulfillment-orders", "3pl-parcelpro", AT, erp_order="SO-2", fulfillment_order="3PL-1"),
        ]
    )
    result = Correlator(store, load_config(environ={})).run_pass()
    tk = transaction_keys.c
    with store.engine.connect() as conn:
        roots = conn.execute(
            select(tk.transaction_id, tk.value).where(tk.key_type.in_(["marketplace_order", "po_number"]))
        ).all()
    assert result.refused_links == 1
    assert len({transaction for transaction, _ in roots}) == 2, roots
    assert result.conflicts == [
        "one observation named erp_order SO-2 (of po_number PO-7) and fulfillment_order 3PL-1 "
        "(of marketplace_order 111-0000000-0000001): kept apart"
    ]


def test_the_command_names_each_conflict_for_whoever_fixes_the_partners_references(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cli_support import syncwatch

    db = f"sqlite:///{tmp_path / 'conflict.db'}"
    store = Store.open(db)
    store.upgrade()
    store.write_observations(
        [
            span(1, *SALES_ORDER, AT, marketplace_order="111-0000000-0000001", erp_order="SO-1"),
            span(2, *SALES_ORDER, AT, marketplace_order="111-0000000-0000002", erp_order="SO-1"),
        ]
    )
    store.close()
    result = syncwatch("correlate", "--db", db, "--now", "2026-11-26T10:00:00Z")
    assert result.returncode == 0, result.stderr
    assert "1 link refused" in result.stdout
    assert (
        "  one observation named erp_order SO-1 (of marketplace_order 111-0000000-0000001) and "
        "marketplace_order 111-0000000-0000002: kept apart\n"
    ) in result.stdout


def test_serve_warns_of_each_conflict_once_when_it_correlates_them(store: Store, caplog) -> None:  # type: ignore[no-untyped-def]
    from syncwatch.commands.serve import correlator_jobs

    store.write_observations(
        [
            span(1, *SALES_ORDER, AT, marketplace_order="111-0000000-0000001", erp_order="SO-1"),
            span(2, *SALES_ORDER, AT, marketplace_order="111-0000000-0000002", erp_order="SO-1"),
        ]
    )
    correlate = next(job for job in correlator_jobs(load_config(environ={}), store) if job.id == "correlate")
    with caplog.at_level("WARNING", logger="syncwatch.commands.serve"):
        assert correlate.func() is True
        assert correlate.func() is True  # nothing new: nothing said again
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "correlate: one observation named erp_order SO-1 (of marketplace_order 111-0000000-0000001) and "
        "marketplace_order 111-0000000-0000002: kept apart (check the partner's references)"
    ]


def test_stats_name_what_the_correlator_read_and_linked_to_nothing_on_every_engine(store: Store) -> None:
    """A call sharing a trace with an order's call is the order's; one naming no order, alone in its
    trace, belongs to nothing, and is listed as such once the correlator has read it."""
    booked = replace(span(1, *SALES_ORDER, AT, marketplace_order="111-0000000-0000001"), trace_id="ab" * 16)
    traced = replace(span(2, "GET /stock", "erp", AT), trace_id="ab" * 16)
    alone = replace(span(3, "GET /stock", "erp", AT), trace_id="cd" * 16)
    mailed = span(6, "GET /customers/jane.doe@example.com", "erp", AT)
    store.write_observations([booked, traced, alone, span(4, "GET /health", "erp", AT), mailed])
    Correlator(store, load_config(environ={})).run_pass()
    store.write_observations([span(5, "GET /health", "erp", AT)])  # not read by the correlator yet
    with store.engine.connect() as conn:
        unlinked = unlinked_observations(conn)
    assert [(u["system"], u["kind"], u["operation"], u["unlinked"], u["observations"]) for u in unlinked] == [
        ("erp", "span", "GET /customers/j•••@•••", 1, 1),
        ("erp", "span", "GET /health", 1, 1),
        ("erp", "span", "GET /stock", 1, 2),
    ]
