"""Retry against the live simulator: the real ERP over HTTP, spans through a real collector,
a real SQLite store, and the correlator moving the transaction on."""

from __future__ import annotations

import re
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from actions_support import World, world
from sqlalchemy import insert, select

from actions.api import perform
from actions.services import close_all
from syncwatch.config import load_config
from syncwatch.store.schema import exceptions, observations, transactions


def erp(w: World) -> httpx.Client:
    return httpx.Client(base_url=w.config.file.partners["erp"].base_url)


def test_unknown_sku_then_master_data_then_retry_creates_one_order_and_resolves(
    run_collector: Any, tmp_path: Path
) -> None:
    with world(run_collector, tmp_path, ["unknown_sku=1"], over_otlp=True) as w:
        order = w.order()
        exc = w.exception("validation")
        assert exc["status"] == "open" and exc["suggested_action"] == "retry"
        sku = re.search(r"SKU (\S+) is not in the item master", exc["summary"])
        assert sku is not None, exc["summary"]
        with erp(w) as client:
            assert client.post("/master-data/skus", json={"sku": sku[1]}).status_code == 201
            result = perform(w.store, w.config, action="retry", exception_id=exc["id"], actor="sam")
            w.settle()
            assert result.ok, result.message
            assert result.status == "resolved" and w.status(exc["id"]) == "resolved"
            assert client.get("/sales-orders", params={"external_ref": order["order"]}).json()["count"] == 1
        assert w.transaction(exc)["current_stage"] == "accepted_by_erp"
        fixes = w.observations("syncwatch")
        assert [(o["operation"], o["outcome"], o["source"]) for o in fixes if o["operation"].startswith("POST")] == [
            ("POST /sales-orders", "ok", "otlp/traces")
        ]
        entries = [(e["actor"], e["action"], e["result"]) for e in w.audit()]
        assert entries == [("sam", "retry", "allowed"), ("sam", "retry", "succeeded")]
        assert w.audit()[-1]["detail"]["status_after"] == "resolved"
        late = perform(w.store, w.config, action="ignore", exception_id=exc["id"], actor="alex", note="dup")
        undo = perform(w.store, w.config, action="reopen", exception_id=exc["id"], actor="alex", note="sure?")
        assert not undo.ok and "nothing to reopen" in undo.message and w.status(exc["id"]) == "resolved"
        assert re.match(
            r"The exception is already resolved: sam's retry at \w{3} \d\d \w{3} [\d:]+ UTC succeeded", late.message
        )
    close_all()


def add_missing_sku(w: World, exc: dict[str, Any]) -> None:
    sku = re.search(r"SKU (\S+) is not in the item master", exc["summary"])
    assert sku is not None, exc["summary"]
    with erp(w) as client:
        assert client.post("/master-data/skus", json={"sku": sku[1]}).status_code == 201


def test_two_concurrent_retries_send_one_create(run_collector: Any, tmp_path: Path) -> None:
    with world(run_collector, tmp_path, ["unknown_sku=1"]) as w:
        order = w.order()
        exc = w.exception("validation")
        add_missing_sku(w, exc)
        before = w.calls("erp POST /sales-orders")
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda actor: retry(w, exc["id"], actor), ["sam", "alex"]))
        w.settle()
        assert w.calls("erp POST /sales-orders") == before + 1
        assert any(r.ok for r in results) and w.status(exc["id"]) == "resolved"
        with erp(w) as client:
            assert client.get("/sales-orders", params={"external_ref": order["order"]}).json()["count"] == 1
        again = retry(w, exc["id"], "sam")
        assert again.ok and "already done" in again.message.lower() and w.calls("erp POST /sales-orders") == before + 1
    close_all()


def test_a_rejected_retry_leaves_the_exception_open_with_the_reason(run_collector: Any, tmp_path: Path) -> None:
    with world(run_collector, tmp_path, ["unknown_sku=1"]) as w:
        w.order()
        exc = w.exception("validation")
        result = retry(w, exc["id"], "sam")
        w.settle()
        assert not result.ok and "422" in result.message and "item master" in result.message
        assert w.status(exc["id"]) == "open"
        assert (exc["attempts"], w.exception("validation")["attempts"]) == (1, 2), (
            "a call is one attempt, not two reports"
        )
        last = w.audit()[-1]
        assert last["result"] == "failed" and last["detail"]["outcome"]["status_code"] == 422


def test_a_retry_that_reaches_nobody_keeps_the_partners_answer_and_says_what_happened(
    run_collector: Any, tmp_path: Path
) -> None:
    with world(run_collector, tmp_path, ["unknown_sku=1"]) as w:
        w.order()
        exc = w.exception("validation")
        erp_url = w.config.file.partners["erp"].base_url
        unreachable = tmp_path / "erp-gone.toml"
        unreachable.write_text(
            (tmp_path / "actions.toml").read_text().replace(erp_url, f"http://127.0.0.1:{dead_port()}")
        )
        gone = load_config(str(unreachable), {"db": str(w.store.engine.url)}, environ={})
        result = perform(w.store, gone, action="retry", exception_id=exc["id"], actor="sam")
        w.settle()
        after = w.exception("validation")
        assert not result.ok and after["id"] == exc["id"] and after["status"] == "open"
        assert after["suggested_action"] == "retry" and "422" in after["summary"], after
        assert "got no answer: erp could not be reached (ConnectError)" in after["summary"], after["summary"]
        assert "PartnerUnavailable" not in after["summary"], "the reason as the partner's answer, not a class name"
        assert (exc["attempts"], after["attempts"]) == (1, 2)
    close_all()


def test_retry_on_a_stage_overdue_after_a_call_that_succeeded_sends_nothing(run_collector: Any, tmp_path: Path) -> None:
    with world(run_collector, tmp_path, []) as w:
        w.order()
        accepted = w.observations("erp")[-1]
        with w.store.engine.begin() as conn:
            order = conn.execute(select(transactions.c.id).where(transactions.c.type == "order")).scalar_one()
            conn.execute(
                insert(exceptions).values(
                    id="exc-late",
                    transaction_id=order,
                    observation_id=accepted["id"],
                    category="stuck",
                    status="open",
                    system="erp",
                    summary="Stage shipped is overdue",
                    context={},
                    opened_at=accepted["start_time"],
                    last_seen_at=accepted["start_time"],
                    updated_at=accepted["start_time"],
                )
            )
        calls = dict(w.driver.network.calls)
        result = retry(w, "exc-late", "sam")
        assert accepted["outcome"] == "ok" and not result.ok, result.message
        assert result.message.startswith("Nothing failed here to send again: POST /invoices at erp succeeded")
        assert dict(w.driver.network.calls) == calls, "the call that succeeded was not sent again"
        assert w.audit()[-1]["result"] == "failed" and w.status("exc-late") == "open"
    close_all()


def dead_port() -> int:
    """A port nothing listens on: connecting to it is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_partner_down_during_retry_records_the_attempt_and_resolves_nothing(
    run_collector: Any, tmp_path: Path
) -> None:
    with world(run_collector, tmp_path, ["partner_down=1"]) as w:
        order = w.order()
        exc = w.exception("partner_unavailable")
        for state in w.driver.network.partners.values():
            state.unreachable = True
        result = retry(w, exc["id"], "sam")
        w.settle()
        assert not result.ok and "503" in result.message and w.status(exc["id"]) == "open"
        assert w.audit()[-1]["detail"]["outcome"]["definitive"] is True
        with w.store.engine.connect() as conn:
            failing = set(conn.execute(select(exceptions.c.system, exceptions.c.endpoint)).all())
        assert failing == {(order["system"], exc["endpoint"])}, "syncwatch's own call failed at the partner"
    close_all()


def test_a_second_click_within_the_partners_retry_after_sends_nothing(run_collector: Any, tmp_path: Path) -> None:
    with world(run_collector, tmp_path, ["partner_down=1"]) as w:
        order = w.order()
        exc = w.exception("partner_unavailable")
        partner = w.driver.network.partners[order["system"]]
        partner.down, partner.throttle, partner.retry_after_s = False, 1, 120
        first = retry(w, exc["id"], "sam")
        creates = w.calls(f"{order['system']} POST /fulfillment-orders")
        second = retry(w, exc["id"], "sam")
        assert not first.ok and "429" in first.message, first.message
        assert not second.ok and "Retry-After" in second.message and "nothing was sent" in second.message
        assert w.calls(f"{order['system']} POST /fulfillment-orders") == creates
        assert [e["result"] for e in w.audit()][-1] == "refused"
    close_all()


def test_a_timeout_is_retried_with_a_lookup_and_never_creates_twice(run_collector: Any, tmp_path: Path) -> None:
    with world(run_collector, tmp_path, ["partner_timeout=1"]) as w:
        order = w.order()
        exc = w.exception("timeout")
        creates = w.calls(f"{order['system']} POST /fulfillment-orders")
        result = retry(w, exc["id"], "sam")
        w.settle()
        assert result.ok and "already holds" in result.message, result.message
        assert w.calls(f"{order['system']} POST /fulfillment-orders") == creates
        documents = w.driver.network.partners[order["system"]].documents.values()
        assert [d["tpl.client_order"] for d in documents] == [order["sales_order"]]
        assert w.status(exc["id"]) == "resolved"
        with w.store.engine.connect() as conn:
            own = set(
                conn.execute(select(observations.c.operation).where(observations.c.system == "syncwatch")).scalars()
            )
        assert "GET /fulfillment-orders" in own and not any("?" in op for op in own), "a lookup is one endpoint"
    close_all()


def test_an_executive_is_refused_nothing_changes_and_the_refusal_is_audited(run_collector: Any, tmp_path: Path) -> None:
    with world(run_collector, tmp_path, ["unknown_sku=1"]) as w:
        w.order()
        exc = w.exception("validation")
        before = w.calls("erp POST /sales-orders")
        result = retry(w, exc["id"], "kim")
        assert not result.ok and "executive" in result.message and result.status == "open"
        assert w.calls("erp POST /sales-orders") == before and w.status(exc["id"]) == "open"
        assert [(e["actor"], e["role"], e["result"]) for e in w.audit()] == [("kim", "executive", "refused")]
    close_all()


def retry(w: World, exception_id: str, actor: str) -> Any:
    return perform(w.store, w.config, action="retry", exception_id=exception_id, actor=actor)


def test_an_exception_a_colleague_resolved_is_neither_retried_nor_closed_again(
    run_collector: Any, tmp_path: Path
) -> None:
    """An agent acting on a page drawn before a colleague resolved it is told who did, and nothing is sent."""
    with world(run_collector, tmp_path, ["unknown_sku=1"]) as w:
        w.order()
        exc = w.exception("validation")
        done = perform(w.store, w.config, action="resolve", exception_id=exc["id"], actor="sam", note="fixed by phone")
        assert done.ok and w.status(exc["id"]) == "resolved"
        before = w.calls("erp POST /sales-orders")
        again = retry(w, exc["id"], "alex")
        assert not again.ok and w.calls("erp POST /sales-orders") == before and w.status(exc["id"]) == "resolved"
        assert again.message.startswith("The exception is already resolved by sam at "), again.message
        assert "nothing was sent" in again.message
        ignored = perform(w.store, w.config, action="ignore", exception_id=exc["id"], actor="alex", note="dup")
        assert not ignored.ok and "already resolved by sam" in ignored.message and w.status(exc["id"]) == "resolved"
        assert [(e["actor"], e["action"], e["result"]) for e in w.audit()][-2:] == [
            ("alex", "retry", "refused"),
            ("alex", "ignore", "refused"),
        ]
        unexplained = perform(w.store, w.config, action="reopen", exception_id=exc["id"], actor="sam")
        assert not unexplained.ok and "a note is required to reopen" in unexplained.message.lower()
        reopened = perform(w.store, w.config, action="reopen", exception_id=exc["id"], actor="sam", note="not fixed")
        assert reopened.ok and w.status(exc["id"]) == "open", reopened.message
        w.settle()
        assert w.status(exc["id"]) == "open", "the correlator keeps a person's reopening"
    close_all()


def test_a_call_to_a_partner_on_another_port_is_sent_to_the_partner_its_server_address_names(tmp_path: Path) -> None:
    """The simulator on other ports than the config's: the URL matched no partner, and the retry gave
    up though the span named the 3PL's host, which [partners] lists."""
    from actions.services import services_for
    from actions.steps import failed_step
    from syncwatch.store import Store

    store = Store.open(f"sqlite:///{tmp_path / 'ports.db'}")
    store.upgrade()
    attributes = {
        "span.kind": "client",
        "url.full": "http://127.0.0.1:47413/fulfillment-orders",
        "server.address": "api.fastship.example",
        "http.request.method": "POST",
        "http.request.body": '{"tpl.client_order": "SO-1"}',
    }
    call = {"operation": "POST /fulfillment-orders", "system": "erp", "attributes": attributes, "payload": None}
    try:
        step = failed_step(services_for(store, load_config(environ={})), [call], None)
    finally:
        close_all()
        store.close()
    assert (step.partner, step.path) == ("3pl-fastship", "/fulfillment-orders")
