"""Alerts: raised once per transaction state, once per quiet period per endpoint, delivered as
Slack-compatible JSON to a real local webhook whose URL comes from the environment."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from observation_support import span
from sqlalchemy import select

from correlator.alerts import deliver, watch_backlog, watch_quiet
from correlator.passes import Correlator
from syncwatch.config import Config, load_config
from syncwatch.model import utcnow
from syncwatch.store import Store
from syncwatch.store.alerts import MAX_ATTEMPTS, RETRY_WAITS
from syncwatch.store.schema import alerts, audit_log

T0 = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
ORDER = "113-0000001-0000001"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(f"sqlite:///{tmp_path / 'alerts.db'}")
    store.upgrade()
    yield store
    store.close()


def raised(store: Store) -> list[tuple[str, str]]:
    with store.engine.connect() as conn:
        return [(r.kind, r.text) for r in conn.execute(select(alerts).order_by(alerts.c.id))]


def test_a_transaction_alerts_once_when_at_risk_and_once_when_breached(store: Store) -> None:
    clock = Clock()
    correlator = Correlator(store, load_config(), clock=clock)
    store.write_observations([span(1, "POST /orders", "marketplace-amz", T0, marketplace_order=ORDER)])
    correlator.run_pass()
    assert raised(store) == []
    for minutes in (13, 14, 16, 20):
        clock.now = T0 + timedelta(minutes=minutes)
        correlator.reevaluate()
    kinds = [kind for kind, _ in raised(store)]
    assert kinds == ["transaction_at_risk", "transaction_breached"]
    assert all(ORDER in text and " at accepted by ERP" in text for _, text in raised(store))


def test_an_order_late_once_alerts_again_when_a_later_stage_runs_late(store: Store) -> None:
    """Accepted by the ERP a minute late, the order was 'breached' for good, so its allocation going
    overdue hours later, stuck, sent nothing: a state already breached never changed."""
    clock = Clock()
    correlator = Correlator(store, load_config(), clock=clock)
    store.write_observations([span(1, "POST /orders", "marketplace-amz", T0, marketplace_order=ORDER)])
    keys = {"marketplace_order": ORDER, "erp_order": "SO-1"}
    store.write_observations([span(2, "POST /sales-orders", "erp", T0 + timedelta(minutes=16), **keys)])
    clock.now = T0 + timedelta(minutes=17)
    correlator.run_pass()
    for minutes in (17 + 25, 17 + 29, 17 + 31, 17 + 40):  # allocation is due 30 minutes after acceptance
        clock.now = T0 + timedelta(minutes=minutes)
        correlator.reevaluate()
    assert raised(store) == [
        (
            "transaction_breached",
            f"Order {ORDER} is breached: accepted by ERP was late; the next stage is due 2026-11-24 15:46 UTC",
        ),
        ("transaction_at_risk", f"Order {ORDER} is at risk at allocated (due 2026-11-24 15:46 UTC)"),
        ("transaction_breached", f"Order {ORDER} is breached at allocated (due 2026-11-24 15:46 UTC)"),
    ]


def test_a_failing_endpoint_alerts_again_only_after_the_quiet_period(store: Store) -> None:
    clock = Clock()
    correlator = Correlator(store, load_config(), clock=clock)
    keys = {"marketplace_order": ORDER}
    store.write_observations(
        [
            span(1, "POST /orders", "marketplace-amz", T0, **keys),
            span(2, "POST /sales-orders", "erp", T0 + timedelta(minutes=1), 503, **keys),
        ]
    )
    correlator.run_pass()
    store.write_observations([span(3, "POST /sales-orders", "erp", T0 + timedelta(minutes=2), 503, **keys)])
    correlator.run_pass()
    [(kind, text)] = raised(store)
    assert kind == "endpoint_failing" and text.startswith(
        "erp POST /sales-orders is failing: 1 order failed there in the last day and is open, latest:"
    )
    clock.now = T0 + timedelta(minutes=40)
    store.write_observations([span(4, "POST /sales-orders", "erp", clock.now, 503, **keys)])
    correlator.run_pass()
    assert [kind for kind, _ in raised(store)].count("endpoint_failing") == 2


def test_an_endpoint_alert_counts_every_order_failing_there_not_only_this_passs(store: Store) -> None:
    """'2 orders failed there' while 11 were open: the count was of the exceptions derived in the pass."""
    clock = Clock()
    config = load_config()
    correlator = Correlator(store, config, clock=clock)
    for n, order in enumerate(("113-0000001-0000001", "113-0000001-0000002", "113-0000001-0000003")):
        at = T0 + timedelta(minutes=40 * n)
        clock.now = at + timedelta(minutes=2)
        store.write_observations(
            [
                span(10 * n + 1, "POST /orders", "marketplace-amz", at, marketplace_order=order),
                span(10 * n + 2, "POST /sales-orders", "erp", at + timedelta(minutes=1), 503, marketplace_order=order),
            ]
        )
        correlator.run_pass()
    said = [text for kind, text in raised(store) if kind == "endpoint_failing"]
    assert [text.split(" failed there")[0] for text in said] == [
        "erp POST /sales-orders is failing: 1 order",
        "erp POST /sales-orders is failing: 2 orders",
        "erp POST /sales-orders is failing: 3 orders",
    ]
    clock.now = T0 + timedelta(hours=4)  # the first order derived again, its failure hours old: no news
    store.write_observations([span(99, "GET /orders/1", "marketplace-amz", clock.now, marketplace_order=ORDER)])
    correlator.run_pass()
    assert [kind for kind, _ in raised(store)].count("endpoint_failing") == 3


class Webhook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []
    status: ClassVar[int] = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[Webhook]]:
    server = HTTPServer(("127.0.0.1", 0), Webhook)
    Webhook.received, Webhook.status = [], 200
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SYNCWATCH_ALERT_WEBHOOK", f"http://127.0.0.1:{server.server_port}/hooks/secret-token")
    yield Webhook
    server.shutdown()
    server.server_close()


def breach_one_order(store: Store) -> Config:
    """An order captured and then left 16 minutes without the ERP accepting it: one breached alert."""
    clock = Clock()
    config = load_config()
    correlator = Correlator(store, config, clock=clock)
    store.write_observations([span(1, "POST /orders", "marketplace-amz", T0, marketplace_order=ORDER)])
    correlator.run_pass()
    clock.now = T0 + timedelta(minutes=16)
    correlator.reevaluate()
    return config


def test_alerts_are_posted_once_with_a_link_to_the_order(store: Store, webhook: type[Webhook]) -> None:
    config = breach_one_order(store)
    assert deliver(store, config) == 1
    assert deliver(store, config) == 0
    (message,) = webhook.received
    assert ORDER in message["text"]
    assert f"{config.dashboard_url}/search?key={ORDER}" in message["text"]


def breach_orders(store: Store, orders: int) -> Config:
    """``orders`` orders captured together and left without the ERP: as many breached alerts at once."""
    config = load_config()
    clock = Clock()
    correlator = Correlator(store, config, clock=clock)
    captured = [
        span(n, "POST /orders", "marketplace-amz", T0, marketplace_order=f"113-0000001-{n:07d}")
        for n in range(1, orders + 1)
    ]
    store.write_observations(captured)
    correlator.run_pass()
    clock.now = T0 + timedelta(minutes=16)
    correlator.reevaluate()
    return config


def test_many_orders_late_at_once_go_as_one_digest_not_a_message_each(store: Store, webhook: type[Webhook]) -> None:
    """A day of late data posted 3,129 messages to the chat within a minute, one per order."""
    config = breach_orders(store, 12)
    assert deliver(store, config, now=T0 + timedelta(minutes=16, seconds=30)) == 0, "they gather a minute"
    assert deliver(store, config, now=T0 + timedelta(minutes=17)) == 12
    (message,) = webhook.received
    assert message["text"].startswith("12 transactions turned late or at risk: 12 orders breached at accepted by ERP")
    assert message["text"].endswith(f"<{config.dashboard_url}/operations|open in syncwatch>")
    with store.engine.connect() as conn:
        assert conn.execute(select(alerts.c.id).where(alerts.c.sent_at.is_(None))).all() == []
    assert deliver(store, config, now=T0 + timedelta(minutes=18)) == 0, "each alert is delivered once"


def test_a_webhook_asking_to_slow_down_gets_nothing_more_that_round(store: Store, webhook: type[Webhook]) -> None:
    webhook.status = 429
    config = breach_orders(store, 3)
    assert deliver(store, config, now=T0 + timedelta(minutes=17)) == 0
    assert len(webhook.received) == 1, "after a 429, the next two wait for the next round"
    with store.engine.connect() as conn:
        attempts = sorted(conn.execute(select(alerts.c.attempts)).scalars())
    assert attempts == [0, 0, 1]
    webhook.status = 200
    assert deliver(store, config, now=T0 + timedelta(minutes=17, seconds=5)) == 2, "the untried go next round"


def test_a_partners_message_reaches_the_chat_without_its_control_codes_or_personal_data(
    store: Store, webhook: type[Webhook]
) -> None:
    """A 503's message pinged the whole channel and carried a link dressed as syncwatch's own."""
    from dataclasses import replace

    keys = {"marketplace_order": ORDER}
    bait = "upstream down <!channel> <https://evil.example/login|Open in syncwatch> call Jane +1 (555) 123-4567"
    failing = [
        replace(span(n, "POST /sales-orders", "erp", T0 + timedelta(minutes=n), 503, **keys), error_message=bait)
        for n in (2, 3)
    ]
    store.write_observations([span(1, "POST /orders", "marketplace-amz", T0, **keys), *failing])
    config = load_config()
    Correlator(store, config, clock=lambda: T0 + timedelta(minutes=5)).run_pass()
    assert deliver(store, config, now=T0 + timedelta(minutes=5)) >= 1
    text = next(m["text"] for m in webhook.received if "is failing" in m["text"])
    assert "&lt;!channel&gt;" in text and "<!channel>" not in text and "<https://evil.example" not in text
    assert "555" not in text and text.endswith("|open in syncwatch>"), text


def test_a_failing_webhook_keeps_the_alert_and_never_logs_its_url(
    store: Store, webhook: type[Webhook], caplog: pytest.LogCaptureFixture
) -> None:
    webhook.status = 500
    config = breach_one_order(store)
    raised_at = T0 + timedelta(minutes=16)
    assert deliver(store, config, now=raised_at) == 0 and webhook.received == [], "gathering a minute"
    raised_at += timedelta(minutes=1)
    assert deliver(store, config, now=raised_at) == 0
    with store.engine.connect() as conn:
        (row,) = conn.execute(select(alerts))
    assert (row.sent_at, row.attempts, row.last_error) == (None, 1, "HTTPStatusError 500")
    assert "secret-token" not in caplog.text
    assert "(transaction_breached) not delivered: HTTPStatusError 500; tried again at 15:17:30 UTC" in caplog.text
    webhook.status = 200
    assert deliver(store, config, now=raised_at + timedelta(seconds=10)) == 0, "not due yet: a breather"
    assert deliver(store, config, now=raised_at + timedelta(minutes=1)) == 1


def test_a_webhook_down_for_the_night_gets_its_alerts_tried_for_eight_hours(
    store: Store, webhook: type[Webhook], caplog: pytest.LogCaptureFixture
) -> None:
    """Five attempts in twenty seconds gave an alert up for good while the log said 'tried again
    later'; then an alert raised a day before serve started spent its attempts five seconds apart."""
    webhook.status = 503
    config = breach_one_order(store)
    at = T0 + timedelta(days=1)  # serve starts a day after the alert was raised
    for wait in (timedelta(0), *RETRY_WAITS):
        at += wait
        assert deliver(store, config, now=at - timedelta(seconds=1)) == 0 and deliver(store, config, now=at) == 0
    assert len(webhook.received) == MAX_ATTEMPTS == 10, "one delivery a due time, none a second early"
    assert at - (T0 + timedelta(days=1)) > timedelta(hours=8)
    assert "given up after 10 attempts (the Admin page lists it)" in caplog.text
    webhook.status = 200
    assert deliver(store, config, now=at + timedelta(days=1)) == 0 and len(webhook.received) == MAX_ATTEMPTS


def test_a_webhook_url_that_is_not_one_is_recorded_on_the_alert_not_a_traceback(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNCWATCH_ALERT_WEBHOOK", "http://[::1/hook")
    config = breach_one_order(store)
    assert deliver(store, config, now=T0 + timedelta(minutes=17)) == 0
    with store.engine.connect() as conn:
        (row,) = conn.execute(select(alerts))
    assert (row.attempts, row.last_error) == (1, "the webhook URL is not valid (InvalidURL)")


def test_a_correlator_that_falls_behind_alerts_once_per_quiet_period(db_url: str) -> None:
    """On each engine: the backlog read and the alert outbox are plain SQL on both."""
    store = Store.open(db_url)
    store.upgrade()
    config = load_config(environ={})
    store.write_observations([span(1, "POST /orders", "marketplace-amz", T0, marketplace_order=ORDER)])
    now = utcnow()
    assert watch_backlog(store, config, now) == 0, "a backlog a pass will take any moment now is no news"
    for minutes, expected in ((10, 1), (11, 0), (45, 1)):  # the quiet period is 30 minutes
        assert watch_backlog(store, config, now + timedelta(minutes=minutes)) == expected, minutes
    [(kind, text), _] = raised(store)
    assert kind == "correlation_behind"
    assert text.startswith("syncwatch is behind: 1 observation received since ") and "is not correlated yet" in text
    Correlator(store, config, clock=lambda: T0).run_pass()
    assert watch_backlog(store, config, now + timedelta(hours=2)) == 0, "caught up: nothing to say"
    store.close()


def test_a_system_that_goes_quiet_alerts_once_per_silence_and_the_nights_lull_does_not(db_url: str) -> None:
    """On each engine: minutes are bucketed in SQL, differently on each."""
    store = Store.open(db_url)
    store.upgrade()
    config = load_config(environ={})
    day, n = timedelta(days=1), iter(range(10_000))
    busy_hour = [T0 - day - timedelta(hours=1) + timedelta(minutes=3 * (i + 1)) for i in range(20)]
    spans = [span(next(n), "POST /shipments", "3pl-fastship", at) for at in busy_hour]
    spans += [span(next(n), "POST /shipments", "3pl-fastship", T0 - timedelta(hours=1))]  # its last word
    spans += [span(next(n), "POST /sales-orders", "erp", at + shift) for at in busy_hour for shift in (day, 0 * day)]
    spans += [span(next(n), "POST /picks", "wms", at) for at in busy_hour[:3]]  # too little yesterday to expect any
    store.write_observations(spans)
    assert watch_quiet(store, config, T0 - timedelta(minutes=50)) == 0, "ten minutes of silence is no news"
    for minutes, expected in ((0, 1), (10, 0), (45, 0)):  # past the 30-minute quiet period: the same silence
        assert watch_quiet(store, config, T0 + timedelta(minutes=minutes)) == expected, minutes
    assert watch_quiet(store, config, T0 + timedelta(days=8)) == 0, "a week's silence is a retired system"
    [(kind, text)] = raised(store)
    assert kind == "system_quiet"
    assert text.startswith(
        f"3pl-fastship has gone quiet: nothing since {T0 - timedelta(hours=1):%Y-%m-%d %H:%M} UTC, though in the "
        "same hours yesterday it sent something in 20 different minutes."
    ), text
    store.close()


def test_only_a_lead_delivers_given_up_alerts_again_and_either_way_it_is_audited(store: Store) -> None:
    from actions.api import deliver_alerts_again

    config = breach_one_order(store)
    with store.writing() as conn:
        conn.execute(alerts.update().values(attempts=MAX_ATTEMPTS, last_error="ConnectError"))
    refused = deliver_alerts_again(store, config, "sam")
    assert not refused.ok and refused.message == "Only a lead may send alerts again, and sam is an agent."
    assert deliver_alerts_again(store, config, "alex").message == "1 alert will be delivered at `serve`'s next run."
    with store.engine.connect() as conn:
        assert conn.execute(select(alerts.c.attempts)).scalar_one() == 0
        audited = conn.execute(select(audit_log.c.actor, audit_log.c.result).order_by(audit_log.c.id)).all()
    assert [tuple(row) for row in audited] == [("sam", "refused"), ("alex", "succeeded")]


def test_a_breach_behind_the_order_is_not_given_the_next_stages_due_time() -> None:
    """'breached at confirmed (due 2026-12-01 06:00 UTC)' quoted the next stage's due, days ahead."""
    from correlator.alerts import transaction_alerts

    now = datetime(2026, 11, 28, 3, 33, tzinfo=UTC)
    row = {"id": "order:1", "type": "order", "sla_state": "breached", "stage_at_fault": "confirmed"}
    stages = '[{"name": "confirmed", "reached_at": null, "due_at": null, "sla_state": "breached"}]'
    ahead = {**row, "due_at": now + timedelta(days=3), "last_seen_at": now, "stages": stages}
    overdue = {**row, "id": "order:2", "due_at": now - timedelta(hours=2), "last_seen_at": now, "stages": stages}
    texts = [a.text for a in transaction_alerts([ahead, overdue], {}, load_config(), now)]
    assert texts == [
        "Order order:1 is breached: confirmed was late; the next stage is due 2026-12-01 03:33 UTC",
        "Order order:2 is breached at confirmed (due 2026-11-28 01:33 UTC)",
    ]
