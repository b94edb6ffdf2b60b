"""Reroute, replay, resolve and assign against the live simulator."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from actions_support import World, world
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from actions.api import allowed_actions, bulk_status, perform, plan_bulk, reroute_choices, reroute_targets, start_bulk
from actions.bulk import Refused
from actions.services import close_all
from syncwatch.store.queries import exception_row
from syncwatch.store.schema import exceptions, transactions


def act(w: World, action: str, exception_id: str, actor: str, **kw: Any) -> Any:
    return perform(w.store, w.config, action=action, exception_id=exception_id, actor=actor, **kw)


def live_at(w: World, system: str) -> list[dict[str, Any]]:
    return [d for d in w.driver.network.partners[system].documents.values() if d["status"] != "cancelled"]


def test_3pl_down_reroute_ships_from_the_alternate_and_confirms_once(run_collector: Any, tmp_path: Path) -> None:
    with world(run_collector, tmp_path, ["partner_down=1"]) as w:
        order = w.order()
        exc = w.exception("partner_unavailable")
        assert exc["suggested_action"] == "reroute" and order["system"] == "3pl-fastship"
        w.driver.network.partners["3pl-fastship"].down = True
        result = act(w, "reroute", exc["id"], "alex", target="3pl-parcelpro")
        assert result.ok, result.message
        # Still waiting for the alternate to confirm: a retry would send the order to fastship too.
        retried = act(w, "retry", exc["id"], "alex")
        assert not retried.ok and "Alex rerouted it to 3pl-parcelpro (" in retried.message, retried.message
        assert "a retry would send the order to 3pl-fastship as well" in retried.message
        again = act(w, "reroute", exc["id"], "alex", target="3pl-parcelpro")
        assert not again.ok and "a second reroute would move it again" in again.message
        w.settle()
        assert live_at(w, "3pl-fastship") == [] and len(live_at(w, "3pl-parcelpro")) == 1
        assert w.calls(f"{order_channel(order)} POST /orders/{{marketplace_order}}/shipment-confirmation") == 1
        assert w.status(exc["id"]) == "resolved"
    close_all()


def test_the_reroute_chooser_offers_the_alternates_of_the_3pl_the_failed_call_went_to(
    run_collector: Any, tmp_path: Path
) -> None:
    """A 3PL that is down is reported by the ERP calling it. The exception is the 3PL's (the call's
    ``url.full`` is its ``base_url``); where a config names neither address, it is the ERP's and the
    order has no partner, and the chooser still finds the 3PL from the failed call itself."""
    with world(run_collector, tmp_path, ["partner_down=1"]) as w:
        w.order()
        exc = w.exception("partner_unavailable")
        assert reroute_choices(w.store, w.config, exc) == ("3pl-fastship", ["3pl-parcelpro", "wms"]), exc
        callers = {**exc, "system": "erp", "context": {**exc["context"], "partner": None}}
        assert reroute_choices(w.store, w.config, callers) == ("3pl-fastship", ["3pl-parcelpro", "wms"])
    close_all()


def test_a_lead_limited_to_some_partners_moves_orders_only_to_them(run_collector: Any, tmp_path: Path) -> None:
    """The scope was checked on where an order is, not where it goes: a lead of one 3PL moved its
    orders to another 3PL, one at a time and, with bulk reroute, all at once."""
    users = '\n[users.lina]\nrole = "lead"\nscope = { partners = ["3pl-fastship", "wms"] }\n'
    with world(run_collector, tmp_path, ["partner_down=1"], users) as w:
        w.order()
        exc = w.exception("partner_unavailable")
        assert reroute_choices(w.store, w.config, exc, "lina") == ("3pl-fastship", ["wms"]), "her partners only"
        assert reroute_targets(w.config, "lina") == ["3pl-fastship", "wms"]
        refused = act(w, "reroute", exc["id"], "lina", target="3pl-parcelpro")
        assert not refused.ok and refused.message.startswith(
            "3pl-parcelpro is outside your partners (3pl-fastship, wms)"
        )
        assert (w.audit()[-1]["result"], w.audit()[-1]["actor"]) == ("refused", "lina")
        assert live_at(w, "3pl-parcelpro") == [], "nothing was sent"
        with pytest.raises(ValueError, match="3pl-parcelpro is outside your partners"):
            plan_bulk(
                w.store, w.config, action="reroute", filters={"status": "open"}, actor="lina", target="3pl-parcelpro"
            )
    close_all()


def test_reroute_is_neither_offered_nor_run_where_a_move_fixes_nothing(run_collector: Any, tmp_path: Path) -> None:
    """Reroute was offered, and ran, on any exception: a lead rerouted a dead-lettered order that had
    shipped, and it went live at a second warehouse."""
    with world(run_collector, tmp_path, ["partner_down=1"]) as w:
        w.order()
        exc = w.exception("partner_unavailable")
        assert "reroute" in allowed_actions(w.config, "alex", exception_row(w.store, exc["id"]))
        with w.store.engine.begin() as conn:  # the order has shipped since (from wherever)
            conn.execute(
                transactions.update().where(transactions.c.id == exc["transaction_id"]).values(current_stage="shipped")
            )
        assert "reroute" not in allowed_actions(w.config, "alex", exception_row(w.store, exc["id"]))
        shipped = act(w, "reroute", exc["id"], "alex", target="3pl-parcelpro")
        assert not shipped.ok and "already shipped: a reroute would fulfil it a second time" in shipped.message
        with w.store.engine.begin() as conn:
            conn.execute(
                exceptions.update()
                .where(exceptions.c.id == exc["id"])
                .values(category="dead_lettered", suggested_action="replay")
            )
            conn.execute(
                transactions.update().where(transactions.c.id == exc["transaction_id"]).values(current_stage="released")
            )
        stuck = act(w, "reroute", exc["id"], "alex", target="3pl-parcelpro")
        assert not stuck.ok and stuck.message.startswith(
            "A reroute does not fix a dead lettered exception: its runbook suggests replay"
        ), stuck.message
        assert live_at(w, "3pl-parcelpro") == [], "nothing was created at the alternate"
        assert [a["result"] for a in w.audit()[-2:]] == ["failed", "failed"]
    close_all()


def test_reroute_cancels_the_fulfilment_the_slow_3pl_did_create(run_collector: Any, tmp_path: Path) -> None:
    with world(run_collector, tmp_path, ["partner_timeout=1"]) as w:
        order = w.order()
        exc = w.exception("timeout")
        original = order["system"]
        alternate = w.config.file.partners[original].alternates[0]
        result = act(w, "reroute", exc["id"], "alex", target=alternate)
        w.settle()
        assert result.ok, result.message
        assert [d["status"] for d in w.driver.network.partners[original].documents.values()] == ["cancelled"]
        assert len(live_at(w, alternate)) == 1
        assert w.calls(f"{order_channel(order)} POST /orders/{{marketplace_order}}/shipment-confirmation") == 1
    close_all()


def test_an_unreachable_original_stops_the_reroute_before_anything_is_created(
    run_collector: Any, tmp_path: Path
) -> None:
    with world(run_collector, tmp_path, ["partner_timeout=1"]) as w:
        order = w.order()
        exc = w.exception("timeout")
        w.driver.network.partners[order["system"]].unreachable = True
        alternate = w.config.file.partners[order["system"]].alternates[0]
        result = act(w, "reroute", exc["id"], "alex", target=alternate)
        assert not result.ok and "503" in result.message and result.status == "open"
        assert live_at(w, alternate) == [] and len(live_at(w, order["system"])) == 1
    close_all()


def test_an_agent_may_not_reroute(run_collector: Any, tmp_path: Path) -> None:
    with world(run_collector, tmp_path, ["partner_down=1"]) as w:
        w.order()
        exc = w.exception("partner_unavailable")
        result = act(w, "reroute", exc["id"], "sam", target="3pl-parcelpro")
        assert not result.ok and "agent" in result.message
        assert live_at(w, "3pl-parcelpro") == [] and w.audit()[-1]["result"] == "refused"
    close_all()


def test_replay_redelivers_the_dead_letter_and_resolves(run_collector: Any, tmp_path: Path) -> None:
    with world(run_collector, tmp_path, ["dead_letter=1"]) as w:
        w.order()
        exc = w.exception("dead_lettered")
        assert len(w.driver.network.erp.dead_letters) == 1
        result = act(w, "replay", exc["id"], "sam")
        w.settle()
        assert result.ok, result.message
        assert w.driver.network.erp.dead_letters == {} and w.status(exc["id"]) == "resolved"
    close_all()


def test_resolve_needs_a_note_then_stays_resolved_and_the_audit_cannot_be_changed(
    run_collector: Any, tmp_path: Path
) -> None:
    with world(run_collector, tmp_path, ["unknown_sku=1"]) as w:
        order = w.order()
        exc = w.exception("validation")
        assert not act(w, "resolve", exc["id"], "sam").ok
        assert act(w, "assign", exc["id"], "sam", target="alex").ok
        again = act(w, "assign", exc["id"], "sam", target="alex")
        assert not again.ok and again.message == "It is already assigned to alex; nothing changed."
        nobody = act(w, "assign", exc["id"], "sam", target="bob")
        assert nobody.message == "There is no user bob in the config; assign an agent or a lead."
        to_pat = act(w, "assign", exc["id"], "sam", target="pat")  # pat works marketplace-b2b only
        if order_channel(order) == "marketplace-b2b":
            assert to_pat.ok, to_pat.message
        else:
            assert to_pat.message == (
                "The scope of pat is marketplace-b2b, which leaves this exception out; assign someone whose it is."
            )
        done = act(w, "resolve", exc["id"], "sam", note="customer cancelled by phone +1 555 010 9999")
        w.settle()
        assert done.ok and w.status(exc["id"]) == "resolved"
        assert [e["result"] for e in w.audit()][:4] == ["failed", "succeeded", "refused", "failed"]
        assert w.audit()[-1]["result"] == "succeeded" and len(w.audit()) == 6
        assert "555" not in (w.audit()[-1]["request_summary"] or "")
        for statement in ("UPDATE audit_log SET result = 'refused'", "DELETE FROM audit_log"):
            try:
                with w.store.writing() as conn:
                    conn.execute(text(statement))
            except DBAPIError as err:
                assert "append-only" in str(err)
            else:
                raise AssertionError(f"{statement} changed the audit log")
    close_all()


def order_channel(order: dict[str, Any]) -> str:
    return "marketplace-b2b" if order["order"].startswith("PO-") else "marketplace-amz"


def test_a_lead_reroutes_every_order_the_down_3pls_hold_in_one_job(run_collector: Any, tmp_path: Path) -> None:
    with world(run_collector, tmp_path, ["partner_down=1"]) as w:
        for _ in range(3):
            w.order()
        every = {"category": "partner_unavailable"}
        to_parcelpro = plan_bulk(
            w.store, w.config, action="reroute", filters=every, actor="alex", target="3pl-parcelpro"
        )
        assert (to_parcelpro.count, to_parcelpro.left_out_text) == (1, "Left out: 2 already with 3pl-parcelpro.")
        plan = plan_bulk(w.store, w.config, action="reroute", filters=every, actor="alex", target="wms")
        assert (plan.count, plan.partners, plan.target) == (3, {"3pl-fastship": 1, "3pl-parcelpro": 2}, "wms")
        with pytest.raises(Refused):
            start_bulk(w.store, w.config, plan, "sam")
        assert act(w, "reroute", plan.exception_ids[0], "alex", target="wms").ok  # one by one, before the job runs
        again = plan_bulk(w.store, w.config, action="reroute", filters=every, actor="alex", target="wms")
        assert (again.count, again.left_out_text) == (2, "Left out: 1 already rerouted.")
        job = start_bulk(w.store, w.config, plan, "alex")
        for thread in [t for t in threading.enumerate() if t.name == job]:
            thread.join()
        status = bulk_status(w.store, job)
        assert (status["succeeded"], status["failed"], status["skipped"]) == (2, 0, 1), status
        assert status["skipped_reasons"] == {"already rerouted": 1}
        w.settle()
        assert live_at(w, "3pl-fastship") == live_at(w, "3pl-parcelpro") == [] and len(live_at(w, "wms")) == 3
        audit = [(e["action"], e["result"]) for e in w.audit() if e["action"] in ("bulk reroute", "reroute")]
        assert audit.count(("bulk reroute", "refused")) == 1 and audit.count(("bulk reroute", "allowed")) == 1
        assert audit.count(("reroute", "succeeded")) == 3 and audit.count(("reroute", "refused")) == 1
    close_all()
