"""The dashboard's pure parts: masking personal data, edits to a masked payload, local sign-ins, shown config."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from actions.masking import summary
from dashboard.config_view import settings_table, shown_value
from dashboard.masking import MASK, apply_edits, mask, masked_bytes, masked_text
from dashboard.users import add_user, read_users, verify
from syncwatch.config import load_config

ORDER = {
    "order_id": "113-1234567-1234567",
    "ship_to": {"name": "Jane Doe", "address_line1": "1 Main St", "city": "Springfield", "postal_code": "62701"},
    "buyer_email": "jane.doe@example.com",
    "phone": "+1 (555) 010-2030",
    "note": "call +1 555 010 2030 or mail jane.doe@example.com",
    "tracking_number": "1ZF2EFB50429269536",
    "lines": [{"sku": "CAB-6036", "qty": 38}],
}


def test_personal_data_is_masked_and_business_keys_stay_readable() -> None:
    shown = masked_text(json.dumps(ORDER).encode())
    for secret in ("Jane", "Doe", "Main St", "Springfield", "62701", "jane.doe@example.com", "555", "2030"):
        assert secret not in shown
    for kept in ("113-1234567-1234567", "1ZF2EFB50429269536", "CAB-6036", "38"):
        assert kept in shown


def test_masking_plain_text_hides_emails_and_phone_numbers() -> None:
    assert masked_text(b"contact bob@shop.example, +44 20 7946 0958") == f"contact b{MASK}@{MASK}, {MASK}"


NOTE = "Called Jane at +1 (555) 123-4567 and 555.123.4567; order 437-6385518-0815154 fixed 2026-11-27T21:22:33.123456Z"


def test_a_phone_number_under_tel_is_masked_whole() -> None:
    assert mask({"tel": "5125550100", "hotel": "Grand"}) == {"tel": MASK, "hotel": "Grand"}


def test_a_note_keeps_its_order_number_and_times_and_loses_its_phone_numbers() -> None:
    """Order numbers and times were starred as phone numbers, in the history and the audit log alike."""
    audited = summary(note=NOTE)
    for shown in (masked_text(NOTE), audited, masked_bytes(NOTE.encode()).decode()):
        assert "437-6385518-0815154" in shown and "2026-11-27T21:22:33.123456Z" in shown, shown
        assert "123-4567" not in shown and "555.123" not in shown, shown


def test_the_hex_view_is_masked_like_the_text_view() -> None:
    shown = masked_bytes(json.dumps(ORDER).encode())
    for secret in (b"Jane", b"Springfield", b"jane.doe@example.com", b"2030"):
        assert secret not in shown
    truncated = b"\x0a\x12\x0a\x10" + b"mail bob@shop.example now" + b"\xff\xfe"  # a cut protobuf, not UTF-8
    cut = masked_bytes(truncated)
    assert len(cut) == len(truncated) and b"bob@" not in cut
    assert cut.startswith(b"\x0a\x12\x0a\x10mail ") and cut.endswith(b" now\xff\xfe")


def test_an_edit_to_the_masked_payload_keeps_the_hidden_values() -> None:
    shown = mask(ORDER)
    edited = json.loads(json.dumps(shown))
    edited["lines"][0]["sku"] = "CAB-6037"
    sent = apply_edits(ORDER, shown, edited)
    assert sent["lines"][0]["sku"] == "CAB-6037"
    assert sent["ship_to"] == ORDER["ship_to"] and sent["buyer_email"] == ORDER["buyer_email"]
    assert apply_edits(ORDER, shown, shown) == ORDER


def test_local_users_are_kept_as_salted_hashes(tmp_path: Path) -> None:
    path = tmp_path / "users.txt"
    add_user(path, "alex", "correct horse")
    add_user(path, "sam", "correct horse")
    assert "correct horse" not in path.read_text()
    (alex_salt, alex_hash), (sam_salt, sam_hash) = read_users(path)["alex"], read_users(path)["sam"]
    assert alex_salt != sam_salt and alex_hash != sam_hash, "the same password hashes differently per user"
    assert verify(path, "alex", "correct horse")
    assert not verify(path, "alex", "wrong horse")
    assert not verify(path, "nobody", "correct horse")
    assert path.stat().st_mode & 0o777 == 0o600


def test_the_shown_config_hides_the_database_password() -> None:
    config = load_config(environ={"SYNCWATCH_DB": "postgresql://sync:hunter2@db.example:5432/syncwatch"})
    assert "hunter2" not in settings_table(config).to_csv()
    assert shown_value("api_token", "abc") == "(set)"
    assert shown_value("alert_webhook_env", "SYNCWATCH_ALERT_WEBHOOK") == "SYNCWATCH_ALERT_WEBHOOK"


def test_the_customer_promise_is_told_apart_from_the_sla() -> None:
    from datetime import UTC, datetime

    from dashboard.fmt import promise

    promised = datetime(2026, 11, 28, 23, 59, tzinfo=UTC)
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    shipped = [{"name": "captured", "reached_at": "2026-11-25T10:00:00+00:00"}, {"name": "shipped"}]
    shipped[1]["reached_at"] = "2026-11-26T09:30:00+00:00"
    assert promise(shipped, promised, now) == "shipped Thu 26 Nov 09:30 UTC, promised by Sat 28 Nov 23:59 UTC: kept"
    shipped[1]["reached_at"] = "2026-11-29T01:59:00"  # a time without its zone is UTC
    assert promise(shipped, promised, now).endswith(": missed by 2 h 00 m")
    waiting = [{"name": "shipped", "reached_at": None}]
    assert promise(waiting, promised, now) == "not shipped yet, promised by Sat 28 Nov 23:59 UTC: 1 d 11 h left"
    assert promise(waiting, promised, datetime(2026, 11, 29, 1, 0, tzinfo=UTC)).endswith(": missed by 1 h 01 m")
    assert promise(waiting, None, now) == ""


def test_the_timeline_draws_every_call_marks_the_failing_step_and_when_the_exception_opened() -> None:
    from datetime import UTC, datetime

    import pandas as pd

    from dashboard.charts import THINNEST, waterfall

    day = pd.Timestamp("2026-11-26T10:00:00Z")
    data = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "kind": ["span", "span", "event"],
            "system": ["marketplace-amz", "erp", "3pl-fastship"],
            "operation": ["POST /orders", "POST /sales-orders", "shipment.shipped"],
            "start_time": [day, day + pd.Timedelta(hours=6), day + pd.Timedelta(hours=12)],
            "end_time": [day + pd.Timedelta(milliseconds=80), day + pd.Timedelta(hours=6, milliseconds=90), pd.NaT],
            "outcome": ["ok", "error", "ok"],
            "status_code": [201, 503, None],
            "error_message": [None, "upstream unavailable", None],
        }
    )
    opened = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
    fig = waterfall(data, highlight=2, opened=opened)
    names = [t.name for t in fig.data]
    assert names == ["call failed", "call ok", "event ok", "this exception's step"]
    whole_ms = (pd.Timestamp(opened) - day).total_seconds() * 1000
    assert min(min(t.x) for t in fig.data if t.type == "bar") >= whole_ms * THINNEST, "an 80 ms call stays visible"
    assert list(fig.data[-1].y) == ["erp · POST /sales-orders"]
    assert [s.line.dash for s in fig.layout.shapes] == ["dot"]
    assert fig.layout.annotations[0].text == "exception opened"


def test_lines_nobody_reported_read_as_a_sentence() -> None:
    from dashboard.search import lines_summary

    assert (
        lines_summary({"shipped": 0})
        == "No system said which lines the order holds, nor which lines its shipments carried."
    )
    assert lines_summary({"shipped": 1}) == "1 line shipped; no system said how many lines the order holds."


def test_a_bulk_jobs_failure_reasons_add_up_to_its_failures() -> None:
    from dashboard.actions_panel import _failure_lines
    from dashboard.masking import literal

    reasons = [(f"erp answered 422: SKU S-{n} is not in the item master", 1) for n in range(7)]
    lines = _failure_lines(reasons, failed=9)
    assert lines[:5] == [f"- 1 × {literal(f'erp answered 422: SKU S-{n} is not in the item master')}" for n in range(5)]
    assert lines[5:] == [
        "- 2 more, for 2 other reasons: each exception's history says which",
        "- 2 refused before anything was sent: the audit log (Admin) says why",
    ]


def test_kpi_periods_say_when_they_are_only_part_of_a_period() -> None:
    import pandas as pd

    from dashboard.kpis import _period_labels

    weeks = pd.Series(["2026-11-16", "2026-11-23"])
    labels = _period_labels(weeks, current="2026-11-23", start=datetime(2026, 11, 18, tzinfo=UTC), finishing=set())
    assert list(labels) == ["2026-11-16 (from Wed 18 Nov)", "2026-11-23 (so far)"]


def test_a_ticked_queue_row_opens_what_it_showed_and_never_another_exception() -> None:
    from dashboard.exceptions import follow_tick

    before, after = ["a", "b", "c"], ["new", "a", "b", "c"]  # an exception arrived on top meanwhile
    assert follow_tick(None, before, before, [1]) == ((1, "b"), "b", False)
    assert follow_tick((1, "b"), before, before, [1]) == ((1, "b"), None, False), "a button's rerun changes nothing"
    # The rows moved under the tick before the next click: the tick goes, the open exception stays.
    assert follow_tick((1, "b"), before, after, [1]) == (None, None, True)
    # A row clicked on the queue as it was drawn opens what it showed, then drops the misplaced tick.
    assert follow_tick(None, before, after, [2]) == (None, "c", True)
    assert follow_tick((0, "a"), before, before, []) == (None, None, False)
    assert follow_tick(None, before, ["a"], [2]) == (None, "c", True)


def test_camel_case_personal_fields_are_masked_and_technical_names_are_not() -> None:
    notice = {
        "AddressLine1": "12 Elm Street",
        "recipientName": "Jane Doe",
        "streetAddress": "12 Elm Street",
        "BuyerEmail": "jane@example.com",
        "service.name": "erp",
        "product_name": "Oak cabinet",
        "AmazonOrderId": "113-1234567-1234567",
    }
    shown = mask(notice)
    masked = {k for k, v in shown.items() if v == MASK}
    assert masked == {"AddressLine1", "recipientName", "streetAddress", "BuyerEmail"}
    assert shown["service.name"] == "erp" and shown["product_name"] == "Oak cabinet"


def test_a_share_axis_spans_two_points_so_a_tenth_of_one_is_no_cliff() -> None:
    import pandas as pd

    from dashboard.charts import _share_range

    low, high = _share_range(pd.DataFrame({"sla_attainment": [0.965, 0.9655, 0.966]}))
    assert high - low >= 0.02 and low < 0.965 and high > 0.966
    low, high = _share_range(pd.DataFrame({"sla_attainment": [1.0, 1.0]}))
    assert (low, high) == (0.98, 1.0)
    assert _share_range(pd.DataFrame({"sla_attainment": [0.2, 0.8]})) == pytest.approx([0.14, 0.86])


def test_a_weekly_change_that_rounds_away_is_no_change() -> None:
    from dashboard.kpis import _delta

    assert _delta(0.96541, 0.96538, percent=True) == "no change"
    assert _delta(0.965, 0.955, percent=True) == "+1.0 pts"
    assert _delta(10.0, 12.5, percent=False) == "-2.5"


def retried_with(body: dict, status: str, outcome: dict) -> str:  # type: ignore[type-arg]
    """What the history says of one retry that sent an edited ``body``."""
    import pandas as pd

    from dashboard.actions_panel import history

    actions = pd.DataFrame(
        {
            "requested_at": [datetime(2026, 11, 27, 19, 0, tzinfo=UTC)],
            "kind": ["retry"],
            "actor": ["pat"],
            "status": [status],
            "request": [{"edited": True, "body": body}],
            "outcome": [outcome],
        }
    )
    return str(history(actions)["What happened"].iloc[0])


def test_the_history_quotes_the_edited_body_a_retry_sent_masked() -> None:
    body = {"customer": "C-1", "ship_to": {"name": "Jane Doe"}, "lines": [{"sku": "TBL-9634"}]}
    done = retried_with(body, "succeeded", {"steps": ["POST /sales-orders at erp: 201"]})
    assert done.startswith("POST /sales-orders at erp: 201; with the edited body {") and "TBL-9634" in done
    assert "Jane" not in done


def test_a_failed_retry_with_an_edited_body_quotes_it_too() -> None:
    said = "erp answered 422: SKU TBL-9635 is not in the item master"
    done = retried_with({"lines": [{"sku": "TBL-9635"}]}, "failed", {"reason": said})
    assert done == said + '; with the edited body {"lines":[{"sku":"TBL-9635"}]}'


def test_a_body_that_does_not_parse_is_masked_by_its_keys_too() -> None:
    cut = '{"AddressLine1":"12 Privet Drive","recipientName":"Harry Potter","AmazonOrderId":"111-2223334-5556667","no'
    shown = masked_text(cut.encode())
    assert "Privet" not in shown and "Harry" not in shown and "111-2223334-5556667" in shown, shown
    raw = masked_bytes(cut.encode())
    assert len(raw) == len(cut) and b"Privet" not in raw and b"111-2223334-5556667" in raw, "same length, same offsets"


def test_a_urls_secrets_and_personal_parameters_are_masked_and_so_is_an_encoded_address() -> None:
    """A security review read a token, an API key, a phone number and jane%40example.com in payloads."""
    from dashboard.masking import mask, masked_text

    url = "https://x.example/cb?email=jane%40example.com&token=T0KEN&phone=5551234567&order=113-1&api_key=K1&sig=S1&p=2"
    shown = mask({"url.full": url, "note": "write to jane%40example.com"})
    assert shown["url.full"] == "https://x.example/cb?email=•••&token=•••&phone=•••&order=113-1&api_key=•••&sig=•••&p=2"
    assert shown["note"] == "write to j•••@•••"
    assert masked_text('{"cut": "GET /x?password=hunter2&id=5"') == '{"cut": "GET /x?password=•••&id=5"'


def test_personal_words_run_together_in_lower_case_are_masked() -> None:
    """CloudEvent extension names must be lower case: customername and shipto showed a name and a street."""
    from dashboard.masking import mask

    shown = mask(
        {
            "cloudevents.customername": "Jane Doe",
            "cloudevents.shipto": "12 Elm Street",
            "deliver_to": "Dock 4, Jane",
            "contactphone": "5551234567",
            "service.name": "erp",
            "shipment": "SH-1",
            "shipping_method": "ground",
        }
    )
    assert [shown[k] for k in ("cloudevents.customername", "cloudevents.shipto", "deliver_to", "contactphone")] == [
        "•••"
    ] * 4
    assert (shown["service.name"], shown["shipment"], shown["shipping_method"]) == ("erp", "SH-1", "ground")


def test_an_address_geocode_is_masked_with_the_address() -> None:
    """Shopify's addresses carry latitude and longitude, which place the buyer's door as the street does."""
    from dashboard.masking import mask

    address = {"address1": "Chestnut Street 92", "latitude": 45.41634, "longitude": -75.6868, "country_code": "US"}
    shown = mask({"shipping_address": address, "geo": {"lat": 45.4, "lng": -75.6}})
    assert shown["shipping_address"] == {"address1": "•••", "latitude": "•••", "longitude": "•••", "country_code": "US"}
    assert shown["geo"] == {"lat": "•••", "lng": "•••"}


def test_every_value_inside_an_address_is_masked_but_identifiers_and_coarse_places() -> None:
    """Judged by their own keys, an address's company and a recipient's 'first' showed."""
    from dashboard.masking import mask

    address = {"id": 7, "first": "Bob", "company": "Bob's Bikes", "province": "Kentucky", "StateOrRegion": "KY"}
    shown = mask({"ShippingAddress": address, "recipient": {"first": "Bob", "ref": "R-1"}, "company": "Acme"})
    assert shown["ShippingAddress"] == {
        "id": 7,
        "first": "•••",
        "company": "•••",
        "province": "Kentucky",
        "StateOrRegion": "KY",
    }
    assert shown["recipient"] == {"first": "•••", "ref": "R-1"}
    assert shown["company"] == "Acme", "outside a personal object a key is judged by its own words"
    named = mask({"customer": {"last_name": "Norman", "last_order_name": "#1001", "first_name": "Bob"}})
    assert named["customer"] == {"last_name": "•••", "last_order_name": "#1001", "first_name": "•••"}


def test_an_oidc_sign_in_is_known_by_its_verified_email_only() -> None:
    """A display name is whatever its owner typed: 'name' = a lead's address took the lead's role."""
    from dashboard.auth import oidc_actor

    assert oidc_actor({"email": "lead@example.com", "email_verified": True}) == "lead@example.com"
    assert oidc_actor({"email": "lead@example.com"}) == "lead@example.com"  # providers that vouch without saying so
    assert oidc_actor({"email": "lead@example.com", "email_verified": False}) is None
    assert oidc_actor({"email": "lead@example.com", "email_verified": "false"}) is None
    assert oidc_actor({"name": "lead@example.com", "sub": "1234"}) is None
    assert oidc_actor({"email": "  ", "name": "Jane"}) is None


def test_a_day_whose_orders_are_still_finishing_is_not_read_as_final() -> None:
    """Yesterday's orders were half on track: its attainment and cycle time read as a crash and a speed-up."""
    import pandas as pd

    from dashboard.kpis import _period_labels, _still_finishing

    table = pd.DataFrame(
        {
            "period": ["2026-11-25", "2026-11-26", "2026-11-26", "2026-11-27"],
            "group": ["all", "amz", "b2b", "all"],
            "transactions": [720, 500, 220, 300],
            "met": [690, 440, 215, 10],
            "breached": [29, 20, 5, 1],
        }
    )
    finishing = _still_finishing(table)
    assert finishing == {"2026-11-26", "2026-11-27"}, "26 Nov: 40 of its 720 orders undecided; 25 Nov: 1"
    labels = _period_labels(table["period"], "2026-11-27", datetime(2026, 11, 21, tzinfo=UTC), finishing)
    assert list(labels) == ["2026-11-25", *["2026-11-26 (still finishing)"] * 2, "2026-11-27 (so far)"]


def test_the_detail_says_where_the_sla_stands_without_calling_a_breach_nothing_due() -> None:
    """A stuck order past its due read 'SLA: Breached, nothing due'."""
    from datetime import timedelta

    from dashboard.exceptions import _sla_line

    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    assert _sla_line({"sla_state": "breached", "due_at": None}, now) == "Breached"
    assert _sla_line({"sla_state": "breached", "due_at": now - timedelta(hours=2)}, now) == "Breached, late by 2 h 00 m"
    assert _sla_line({"sla_state": "breached", "due_at": now + timedelta(days=1)}, now).startswith(
        "Breached, next stage due in 1 d"
    )
    assert _sla_line({"sla_state": "on_track", "due_at": now + timedelta(minutes=40)}, now) == "On track, 40 m left"
    assert _sla_line({"sla_state": "on_track", "due_at": None}, now) == "On track, nothing due"


def test_a_week_the_range_starts_inside_is_drawn_at_its_first_day_in_range() -> None:
    """Drawn at its Monday, 'last 7 days' per week showed Sunday 22 Nov alone as the week of the 16th."""
    import pandas as pd

    from dashboard.kpis import _drawn_from

    table = pd.DataFrame({"period": ["2026-11-16", "2026-11-23"], "group": ["all", "all"]})
    drawn, hollow = _drawn_from(table, {"2026-11-16", "2026-11-23"}, datetime(2026, 11, 22, tzinfo=UTC))
    assert list(drawn["period"]) == ["2026-11-22", "2026-11-23"] and hollow == {"2026-11-22", "2026-11-23"}


def test_a_share_of_a_handful_of_orders_is_not_drawn() -> None:
    """Today's first hour had one order decided, breached: attainment dived from 92 % to 0 %."""
    import pandas as pd

    from dashboard.kpis import _without_thin_shares

    table = pd.DataFrame(
        {
            "period": ["2026-11-27", "2026-11-28"],
            "transactions": [720, 6],
            "met": [600, 0],
            "breached": [50, 1],
            "sla_attainment": [600 / 650, 0.0],
            "exception_rate": [0.05, 0.5],
        }
    )
    shown, thin = _without_thin_shares(table)
    assert thin and shown["sla_attainment"].iloc[0] == 600 / 650 and pd.isna(shown["sla_attainment"].iloc[1])
    assert pd.isna(shown["exception_rate"].iloc[1]) and list(table["sla_attainment"]) == [600 / 650, 0.0]
    assert not _without_thin_shares(table.iloc[:1])[1]


def test_a_chart_of_one_instant_or_one_hour_keeps_a_readable_axis() -> None:
    """A new database's first order and first hour were drawn across fractions of a millisecond
    (04:59:59.9996 … 05:00:00.0004), and a grid of equal late counts read 31.5, 32, 32.5."""
    import pandas as pd

    from dashboard.charts import stage_heatmap, throughput, waterfall

    at = pd.Timestamp("2026-11-26T05:00:00Z")
    one = pd.DataFrame(
        {
            "id": [1],
            "kind": ["event"],
            "system": ["marketplace-amz"],
            "operation": ["order.created"],
            "start_time": [at],
            "end_time": [pd.NaT],
            "outcome": ["ok"],
            "status_code": [None],
            "error_message": [None],
        }
    )
    low, high = (pd.Timestamp(t) for t in waterfall(one).layout.xaxis.range)
    assert high - low == pd.Timedelta(seconds=10) and low < at < high
    hour = pd.DataFrame({"hour": ["2026-11-26 05"], "started": [3], "completed": [1]})
    low, high = (pd.Timestamp(t) for t in throughput(hour, 2).layout.xaxis.range)
    assert (low, high) == (pd.Timestamp("2026-11-26 04:30"), pd.Timestamp("2026-11-26 05:30"))
    late = pd.DataFrame({"stage": ["released", "shipped"], "partner": ["3pl-a", "3pl-a"], "transactions": [32, 32]})
    [grid] = stage_heatmap(late, ["released", "shipped"]).data
    assert (grid.zmin, grid.zmax) == (0, 32)


def test_under_a_minute_late_or_left_reads_so_not_zero_minutes() -> None:
    """'late by 0 m' beside a breached order read as a contradiction."""
    from datetime import UTC, datetime, timedelta

    from dashboard.fmt import time_left

    now = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    assert time_left(now - timedelta(seconds=20), now) == "late by < 1 m"
    assert time_left(now + timedelta(seconds=50), now) == "< 1 m left"
    assert time_left(now + timedelta(minutes=3, seconds=10), now) == "3 m left"


@pytest.mark.parametrize(
    ("seen", "counted"),
    [
        (None, "local"),
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::7", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("lead alex signed in from HQ ok", "unknown"),
    ],
)
def test_the_lockout_counts_an_address_once_however_it_is_written(
    monkeypatch: pytest.MonkeyPatch, seen: str | None, counted: str
) -> None:
    """Every address of an IPv6 /64 is one host's to choose, and a forwarded header's text is no
    address: counted apiece, they let one client guess again and again, and wrote fiction to the audit log."""
    from types import SimpleNamespace

    from dashboard import auth

    monkeypatch.setattr(auth, "st", SimpleNamespace(context=SimpleNamespace(ip_address=seen)))
    assert auth.client_address() == counted
