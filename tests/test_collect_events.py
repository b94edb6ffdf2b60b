"""CloudEvents and webhooks item by item: what a partner's odd but plausible events become."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from collectors import events, webhook
from collectors.sink import Sink
from correlator.passes import Correlator
from syncwatch.config import load_config
from syncwatch.store.schema import observations, quarantine, transaction_keys, transactions

FIXTURES = Path(__file__).parent / "fixtures"

CE = "application/cloudevents+json"


def event(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "urn:erp",
        "type": "com.example.order.booked",
        "time": "2026-11-25T10:00:00Z",
        "data": {"sales_order": "SO-1"},
    }
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not None}


def parse(sink: Sink, *items: dict[str, object]) -> events.Parsed:
    return events.parse_events(list(items), sink.context("events"))


def test_two_events_whose_source_and_id_only_split_differently_are_both_stored(sink: Sink) -> None:
    parsed = parse(sink, event(id="1:2", source="urn:erp"), event(id="2", source="urn:erp:1"))
    assert not parsed.rejections
    committed = sink.commit(parsed, "events")
    assert (committed.stored, committed.duplicates) == (2, 0)
    again = sink.commit(parse(sink, event(id="1:2", source="urn:erp")), "events")
    assert (again.stored, again.duplicates) == (0, 1)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"data_base64": "eyJhIjoxfQ=="}, "carries both data and data_base64"),
        ({"specversion": 1.0}, "attribute(s) specversion (1.0) must be strings"),
        ({"id": 7}, "attribute(s) id (7) must be strings"),
    ],
)
def test_events_the_spec_forbids_are_rejected_with_the_reason(sink: Sink, changes: dict, reason: str) -> None:  # type: ignore[type-arg]
    parsed = parse(sink, event(**changes))
    assert not parsed.rows and reason in parsed.rejections[0].reason


def test_a_traceparent_that_is_not_hex_links_no_trace(sink: Sink) -> None:
    good = "00-5b8efff798038103d269b633813fc60c-eee19b7ec3c1b174-01"
    bad = "00-" + "z" * 32 + "-eee19b7ec3c1b174-01"
    parsed = parse(sink, event(traceparent=bad), event(id="e-2", traceparent=good))
    assert [row[9] for row in parsed.rows] == [None, "5b8efff798038103d269b633813fc60c"]


def test_a_webhook_id_or_time_of_the_wrong_shape_is_rejected_naming_where(sink: Sink) -> None:
    mapping = sink.config.file.webhooks["amazon-sp-api"]
    ctx = sink.context("webhook/amazon-sp-api")

    def reason(document: dict[str, object]) -> str:
        parsed = webhook.parse(json.dumps(document).encode(), {}, mapping, "amazon-sp-api", ctx)
        assert not parsed.rows
        return parsed.rejections[0].reason

    meta = {"NotificationType": "ORDER_CHANGE"}
    assert reason({**meta, "NotificationMetadata": {"NotificationId": {"x": 1}}}) == (
        "webhook amazon-sp-api: the id at /NotificationMetadata/NotificationId must be a string or a number, "
        'got {"x": 1}'
    )
    assert "the id at /NotificationMetadata/NotificationId must be" in reason(
        {**meta, "NotificationMetadata": {"NotificationId": True}}
    )
    assert reason({**meta, "NotificationMetadata": {"NotificationId": "n-1"}, "EventTime": 1764064800}) == (
        "webhook amazon-sp-api: the time at /EventTime must be an RFC 3339 string, got 1764064800"
    )
    assert reason({**meta, "NotificationMetadata": {"NotificationId": "n-1"}, "EventTime": "yesterday"}) == (
        "webhook amazon-sp-api: at /EventTime, time 'yesterday' is not an RFC 3339 timestamp"
    ), "where the time was read, as for an id"


def test_once_sources_have_tokens_a_webhook_without_its_own_asks_for_one(run_collector) -> None:  # type: ignore[no-untyped-def]
    collector = run_collector('[sources.partner]\ntoken_env = "PARTNER_TOKEN"\n', {"PARTNER_TOKEN": "t0ken"})
    body = {"NotificationType": "ORDER_CHANGE", "NotificationMetadata": {"NotificationId": "n-1"}}
    url = f"{collector.url}/v1/webhooks/amazon-sp-api"
    refused = httpx.post(url, json=body)
    assert refused.status_code == 401 and "missing bearer token" in refused.json()["error"]
    assert httpx.post(url, json=body, headers={"authorization": "Bearer t0ken"}).status_code == 200
    with collector.store.engine.connect() as conn:
        assert list(conn.execute(select(observations.c.natural_id)).scalars()) == ["event:marketplace-amz:n-1"]


def test_a_webhook_no_key_rule_reads_is_warned_at_start(run_collector, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    """A key rule naming the system with a typo left a partner's notices keyless: 200, no hint anywhere."""
    config = """
[webhooks.quickship]
system = "3pl-quickship"
id = ["/id"]
type_value = "fulfillment"

[[key_rules]]
system = "3pl-quikship"
json_pointer = "/tracking_number"
key = "tracking"
"""
    with caplog.at_level("WARNING", logger="collectors.server"):
        run_collector(config)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("webhook quickship:")]
    assert said == [
        'webhook quickship: no [[key_rules]] json_pointer names system = "3pl-quickship" (a rule names system = '
        '"3pl-quikship": a typo?), so only the rules for every system read its notices, which then link to no '
        "order unless those find its identifiers"
    ]
    caplog.clear()
    with caplog.at_level("WARNING", logger="collectors.server"):
        run_collector(config.replace('"3pl-quikship"', '"3pl-quickship"'))
    assert not [r for r in caplog.records if r.getMessage().startswith("webhook quickship:")], "read: nothing to say"


def test_shopifys_order_and_fulfilment_webhooks_make_one_order_with_the_packaged_rules(run_collector) -> None:  # type: ignore[no-untyped-def]
    """The packaged mapping read only /order_id, which an order topic does not carry: Shopify's own
    orders linked to nothing. Public fixtures, as Shopify posts them (the resource unwrapped)."""
    collector = run_collector()
    url = f"{collector.url}/v1/webhooks/shopify"
    sent = [
        ("orders/create", "shopifypy_order.json", "order"),
        ("fulfillments/create", "shopifypy_fulfillment.json", "fulfillment"),
    ]
    for n, (topic, name, wrapper) in enumerate(sent):
        body = json.loads((FIXTURES / "commerce" / name).read_text())[wrapper]
        headers = {
            "X-Shopify-Topic": topic,
            "X-Shopify-Webhook-Id": f"w-{n}",
            "X-Shopify-Triggered-At": f"2026-11-26T10:0{n}:00Z",
        }
        assert httpx.post(url, json=body, headers=headers).json()["stored"] == 1
    Correlator(
        collector.store, load_config(environ={}), clock=lambda: datetime(2026, 11, 26, 11, tzinfo=UTC)
    ).run_pass()
    with collector.store.engine.connect() as conn:
        [order] = conn.execute(select(transactions.c.id, transactions.c.channel, transactions.c.stages)).all()
        keys = set(conn.execute(select(transaction_keys.c.key_type, transaction_keys.c.value)).all())
    assert order.id == "order:450789469" and order.channel == "marketplace-shopify"
    reached = {s["name"] for s in order.stages if s["reached_at"]}
    assert reached == {"captured", "confirmed"}
    assert {("shopify_order", "450789469"), ("tracking", "1Z2345")} <= keys
    assert ("shopify_order", "255858046") not in keys, "a fulfilment's own id is not its order's"


def test_packaged_webhooks_a_config_no_longer_reads_are_named_once_not_warned_about(run_collector, caplog) -> None:  # type: ignore[no-untyped-def]
    """A deployment's own [[key_rules]] replace the packaged ones, but the packaged webhooks stay: every
    start warned twice about partners it may never have."""
    with caplog.at_level("INFO", logger="collectors.server"):
        run_collector("[[key_rules]]\nsystem = 'erp'\nattribute = 'erp.so'\nkey = 'erp_order'\n")
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "webhook" in r.getMessage()]
    assert [level for level, _ in said] == ["INFO"]
    assert said[0][1].startswith("packaged webhooks amazon-sp-api, shopify take notices, but no [[key_rules]] of ")


def test_a_notice_whose_id_came_before_with_other_content_is_quarantined_not_counted(run_collector) -> None:  # type: ignore[no-untyped-def]
    """A partner reusing one id per fulfillment: the update (a tracking number) was dropped as a
    duplicate and the exception called the two notices harmless repeats."""
    collector = run_collector()
    url = f"{collector.url}/v1/events"
    created = {"specversion": "1.0", "id": "f-1", "source": "3pl-quickship", "type": "fulfillment.created"}
    first = httpx.post(url, json={**created, "data": {"sales_order": "SO-1"}}, headers={"content-type": CE})
    again = httpx.post(url, json={**created, "data": {"sales_order": "SO-1"}}, headers={"content-type": CE})
    updated = {**created, "type": "fulfillment.updated", "data": {"sales_order": "SO-1", "tracking_number": "1Z9"}}
    reused = httpx.post(url, json=updated, headers={"content-type": CE})
    assert (first.json()["stored"], again.json()["duplicates"]) == (1, 1), "a true re-delivery is a duplicate"
    assert reused.status_code == 400 and reused.json()["stored"] == reused.json()["duplicates"] == 0
    [error] = reused.json()["errors"]
    assert error["reason"].startswith("its id came before with type 'fulfillment.created', now 'fulfillment.updated'")
    with collector.store.engine.connect() as conn:
        [(duplicates,)] = conn.execute(select(observations.c.duplicates))
        [(reason, raw)] = conn.execute(select(quarantine.c.reason, quarantine.c.raw))
    assert duplicates == 1, "the reused id is not counted as the same notice again"
    assert "must be unique per notice" in reason and b"1Z9" in raw
