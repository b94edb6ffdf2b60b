"""Every dashboard page rendered in-process with AppTest, against the sample week and against an empty database."""

from __future__ import annotations

import base64
import io
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from observation_support import span
from streamlit.testing.v1 import AppTest

from correlator.passes import Correlator
from dashboard import auth
from dashboard.endpoints import echoes_of_own_rows, health_table
from dashboard.fmt import category_label, money
from dashboard.users import add_user
from dashboard.widgets import Page
from syncwatch.config import load_config
from syncwatch.model import stage_label
from syncwatch.store import QuarantineItem, Store
from syncwatch.store import queries as q

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
PAGES = ("operations.py", "exceptions.py", "endpoints.py", "search.py", "kpis.py", "admin.py")
TITLES = dict(zip(PAGES, ("Operations", "Exceptions", "Endpoints", "Transaction search", "KPIs", "Admin"), strict=True))


def open_app(monkeypatch: pytest.MonkeyPatch, db: str, page: str | None = None, user: str = "alex") -> AppTest:
    """The app as `syncwatch demo` starts it (signed in as ``user``), on ``page``."""
    monkeypatch.setenv("SYNCWATCH_DB", db)
    monkeypatch.setenv("SYNCWATCH_DASHBOARD_DEMO_USER", user)
    monkeypatch.delenv("SYNCWATCH_CONFIG", raising=False)
    monkeypatch.delenv("SYNCWATCH_DASHBOARD_USERS", raising=False)
    at = AppTest.from_file(APP, default_timeout=120).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    """Everything a person reads on the page, as one string."""
    kinds = ("title", "header", "subheader", "markdown", "caption", "info", "success", "warning", "error", "metric")
    elements = [el for kind in kinds for el in getattr(at, kind)]
    parts = [read(str(getattr(el, "value", ""))) + str(getattr(el, "label", "")) for el in elements]
    return "\n".join(parts)


def read(markdown: str) -> str:
    """What the browser shows of Markdown: partner text reaches it with every special character escaped."""
    return re.sub(r"\\(.)", r"\1", markdown)


@pytest.fixture
def empty_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    store = Store.open(url)
    store.upgrade()
    store.close()
    return url


@pytest.fixture
def sample_copy(sample_db: str, tmp_path: Path) -> Iterator[str]:
    """A private copy of the sample database, for tests that act on it."""
    target = tmp_path / "copy.db"
    with sqlite3.connect(sample_db.removeprefix("sqlite:///")) as source, sqlite3.connect(target) as copy:
        source.backup(copy)
    yield f"sqlite:///{target}"


def test_a_backlog_the_correlator_left_waiting_is_announced_on_every_page(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str
) -> None:
    at = open_app(monkeypatch, sample_copy, "operations.py")
    assert not at.warning, "the sample week is correlated to its end: nothing waits"
    with sqlite3.connect(sample_copy.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE checkpoints SET position = position - 250 WHERE source = 'correlator'")
        conn.execute("UPDATE observations SET received_at = datetime('now', '-10 minutes')")
    at = open_app(monkeypatch, sample_copy, "exceptions.py")
    [warning] = [w.value for w in at.warning if "not correlated yet" in w.value]
    assert warning.startswith("250 observations received since ") and "`syncwatch correlate`" in warning


def test_operations_reads_the_clock_at_each_refresh_not_once_at_page_load(
    monkeypatch: pytest.MonkeyPatch, sample_db: str
) -> None:
    """A wall screen's figures refreshed every 30 s while 'Data as of', ages and SLA time left stayed
    at the time the page was opened: its refreshing part used the time the page had read once."""
    from dashboard import context

    readings: list[datetime] = []

    def clock(store: Store) -> datetime:
        readings.append(datetime(2026, 11, 8, 23, len(readings), tzinfo=UTC))
        return readings[-1]

    monkeypatch.setattr(context, "clock", clock)
    at = open_app(monkeypatch, sample_db, "operations.py")
    readings.clear()
    at.run()
    said = [c.value for c in at.caption if c.value.startswith("Data as of")]
    assert len(readings) == 2, "the page reads the clock, and its refreshing part reads it again each time"
    assert said == [f"Data as of {readings[-1]:%a %d %b %H:%M} UTC · refreshes every 30 s"]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_the_sample_week(monkeypatch: pytest.MonkeyPatch, sample_db: str, page: str) -> None:
    at = open_app(monkeypatch, sample_db, page)
    assert at.title[0].value == TITLES[page]
    assert "Data as of Sun 08 Nov 23:59 UTC" in texts(at)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_on_an_empty_database_says_how_to_send_data(
    monkeypatch: pytest.MonkeyPatch, empty_db: str, page: str
) -> None:
    at = open_app(monkeypatch, empty_db, page)
    shown = texts(at)
    assert "Nothing has arrived yet" in shown
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318" in shown
    assert "syncwatch demo" in shown


def test_a_missing_database_says_how_to_create_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    at = open_app(monkeypatch, f"sqlite:///{tmp_path / 'none.db'}", "operations.py")
    assert "syncwatch db upgrade" in texts(at)


def test_a_database_that_does_not_answer_is_named_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hint showed the whole URL, password included, to anyone who reached the page."""
    at = open_app(monkeypatch, "postgresql://root:S3cretPW@127.0.0.1:1/nowhere", "operations.py")
    shown = texts(at)
    assert "syncwatch db upgrade --db postgresql://root:***@127.0.0.1:1/nowhere" in shown and "S3cret" not in shown


def test_operations_calls_out_the_failing_erp(monkeypatch: pytest.MonkeyPatch, sample_db: str) -> None:
    at = open_app(monkeypatch, sample_db)
    assert at.title[0].value == "Operations", "a lead lands on Operations"
    callout = next(e.value for e in at.error if e.value.startswith("**erp** needs attention: "))
    said = r"open exceptions \(\d+ \w[\w ]+(, \d+ \w[\w ]+)*\), the newest .+, the oldest .+ old\.$"
    assert re.search(said, callout), callout
    links = {p.proto.label: (p.proto.page, p.proto.query_string) for p in at.get("page_link")}
    assert links["Open erp's exceptions"] == ("exceptions", "system=erp"), "in the app: a plain link would sign out"
    metrics = {m.label: m.value for m in at.metric}
    # PO-451311, invoiced before its confirmation came, is open and late at confirmed: 24 of 24.
    assert metrics["Open, breached"] == "24" and metrics["Active exceptions"] == "24"
    with sqlite3.connect(sample_db.removeprefix("sqlite:///")) as conn:
        (open_orders,) = conn.execute("SELECT count(*) FROM transactions WHERE type = 'order' AND status = 'open'")
    assert int(metrics["Open orders"].replace(",", "")) == open_orders[0], "orders, as the charts beside it count"
    traces = [t for c in at.get("plotly_chart") for t in json.loads(c.proto.spec)["data"]]
    backlog = next(t for t in traces if t.get("name") == "open (backlog)")
    assert plotted(backlog["y"])[-1] == open_orders[0], "the backlog line ends where the card says"
    late = at.dataframe[0].value
    assert len(late) == 24 and set(late["SLA"]) == {"Breached"}
    assert "Download all 24 as CSV" in [b.proto.label for b in at.get("download_button")]
    from types import SimpleNamespace

    from dashboard.operations import _late_csv

    store = Store.open(sample_db)
    try:
        page = SimpleNamespace(store=store, now=datetime(2026, 11, 8, 23, 59, tzinfo=UTC))
        every = pd.read_csv(io.BytesIO(_late_csv(page)))  # type: ignore[arg-type]
    finally:
        store.close()
    assert sorted(every["transaction"]) == sorted(late["transaction"]), "the CSV holds what the table holds"
    assert list(every.columns) == [*late.columns, "due (UTC)"] and set(every["SLA"]) == {"Breached"}, "in its words"
    assert every["value"].dtype == float and every["value"].sum() > 0, "a value a spreadsheet sums, not '$1,234.50'"
    with sqlite3.connect(sample_db.removeprefix("sqlite:///")) as conn:
        active = dict(
            conn.execute(
                "SELECT transaction_id, min(category) FROM exceptions WHERE status IN ('open', 'retrying') "
                "GROUP BY transaction_id"
            ).fetchall()
        )
    expected = [category_label(active[tid]) if tid in active else "none open" for tid in late["transaction"]]
    assert list(late["exception"]) == expected and set(expected) - {"none open"}, "what an agent can work, by order"


def test_operations_names_orders_not_yet_with_a_partner_as_such(
    monkeypatch: pytest.MonkeyPatch, sample_db: str
) -> None:
    at = open_app(monkeypatch, sample_db)
    by_partner = at.get("plotly_chart")[1].proto.spec  # SLA by channel, then by partner
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    heatmap = next(spec for spec in specs if spec["data"] and spec["data"][0]["type"] == "heatmap")
    order = [stage_label(s.name) for s in load_config(environ={}).file.processes["order"].stages]
    rows = heatmap["data"][0]["y"]
    assert rows == sorted(rows, key=order.index) and heatmap["layout"]["yaxis"]["autorange"] == "reversed", rows
    partners = {label for trace in json.loads(by_partner)["data"] for label in trace["y"]}
    assert "not released yet" in partners and "unknown" not in partners, partners
    assert "not released yet" in set(at.dataframe[0].value["partner"]), "the late table says the same"
    late = at.dataframe[0].value
    assert not any("_" in where for where in late["where"].dropna()), "stages as people say them"
    breached = late[late["SLA"] == "Breached"]
    assert not any(t.endswith(" left") for t in breached["time left"]), "a breached order never reads 'N left'"
    assert all(w.startswith("late at ") or w.endswith(" was late") for w in breached["where"].dropna())


def test_exception_filters_narrow_the_queue(monkeypatch: pytest.MonkeyPatch, sample_db: str) -> None:
    at = open_app(monkeypatch, sample_db, "exceptions.py")
    assert len(at.dataframe[0].value) == 24
    category = next(m for m in at.multiselect if m.label == "Category")
    category.set_value(["validation"]).run()
    queue = at.dataframe[0].value
    assert len(queue) == 7 and set(queue["category"]) == {"validation"}
    status = next(m for m in at.multiselect if m.label == "Status")
    status.set_value([]).run()
    assert len(at.dataframe[0].value) == 7, "no status chosen means any status"
    order = next(o.split(":", 1)[1] for o in at.dataframe[0].value["order"] if o.startswith("order:PO-"))
    next(t for t in at.text_input if t.label.startswith("Search by")).input(order.lower()).run()
    assert set(at.dataframe[0].value["order"]) == {f"order:{order}"}, "an id typed in lower case finds its order"


def test_every_matching_exception_is_in_reach_past_the_first_rows(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str
) -> None:
    """The queue drew 200 rows and said '200 of 218', while bulk actions took all 218."""
    with sqlite3.connect(sample_copy.removeprefix("sqlite:///")) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(exceptions)") if row[1] != "id"]
        copied = ", ".join(columns)
        for n in range(200):
            conn.execute(
                f"INSERT INTO exceptions (id, {copied}) SELECT id || '-copy{n}', {copied} FROM exceptions "
                "WHERE status = 'open' ORDER BY id LIMIT 1"
            )
    at = open_app(monkeypatch, sample_copy, "exceptions.py")
    rows = next(s for s in at.selectbox if s.label == "Rows shown, of 224")
    assert rows.options == ["1–200", "201–224"] and len(at.dataframe[0].value) == 200
    rows.set_value("201–224").run()
    assert len(at.dataframe[0].value) == 24
    assert "Queue: 201–224 of 224 (newest first) exceptions matching" in [h.value for h in at.subheader]


def test_the_queue_comes_in_the_order_chosen_from_the_whole_match(
    monkeypatch: pytest.MonkeyPatch, sample_db: str
) -> None:
    at = open_app(monkeypatch, sample_db, "exceptions.py")
    order = next(s for s in at.selectbox if s.label == "Sort by")
    assert order.value == "newest first"
    store = Store.open(sample_db)
    try:
        everything = q.exception_queue(store, q.QueueFilter(), limit=10_000)
    finally:
        store.close()
    order.set_value("oldest first").run()
    first = at.dataframe[0].value.iloc[0]
    oldest = everything.sort_values(["opened_at", "id"]).iloc[0]
    assert first["summary"] == oldest["summary"] and first["system"] == oldest["system"]
    next(s for s in at.selectbox if s.label == "Sort by").set_value("highest order value first").run()
    highest = everything["order_value"].dropna().astype(float).max()  # amounts, not text: $913.00 < $24,597.27
    assert at.dataframe[0].value["value"].iloc[0] == money(str(highest))


def test_a_link_naming_a_failing_system_opens_its_exceptions(monkeypatch: pytest.MonkeyPatch, sample_db: str) -> None:
    """Operations' callout and an endpoint alert link to exceptions?system=NAME."""
    everything = open_app(monkeypatch, sample_db, "exceptions.py").dataframe[0].value
    at = open_app(monkeypatch, sample_db, "operations.py")
    at.query_params["system"] = "erp"  # the link: another page, then the queue with ?system=erp
    at.switch_page("exceptions.py").run()
    chosen = next(m for m in at.multiselect if m.label == "Failing system")
    assert chosen.value == ["erp"]
    queue = at.dataframe[0].value
    assert set(queue["system"]) == {"erp"} and len(queue) == (everything["system"] == "erp").sum() < len(everything)


def test_a_failing_system_no_partner_names_can_be_chosen_too(monkeypatch: pytest.MonkeyPatch, sample_copy: str) -> None:
    with sqlite3.connect(sample_copy.removeprefix("sqlite:///")) as conn:
        first_open = "SELECT min(id) FROM exceptions WHERE status = 'open'"
        conn.execute(f"UPDATE exceptions SET system = 'pricing-service' WHERE id = ({first_open})")
    at = open_app(monkeypatch, sample_copy, "exceptions.py")
    chooser = next(m for m in at.multiselect if m.label == "Failing system")
    assert "pricing-service" in chooser.options and "erp" in chooser.options
    chooser.set_value(["pricing-service"]).run()
    assert set(at.dataframe[0].value["system"]) == {"pricing-service"}


def test_the_queue_searches_by_any_business_key(monkeypatch: pytest.MonkeyPatch, sample_db: str) -> None:
    at = open_app(monkeypatch, sample_db, "exceptions.py")
    at.text_input[0].input("SO-109458").run()
    queue = at.dataframe[0].value
    assert len(queue) == 1 and queue["category"].iloc[0] == "partner unavailable"
    at.text_input[0].input("so-109458").run()
    assert list(at.dataframe[0].value["order"]) == list(queue["order"]), "typed in lower case, the same order"
    at.text_input[0].input("109458").run()
    assert "Open SO-109458" in [link.label for link in at.get("page_link")], "a key without its prefix is offered"
    at.text_input[0].input("no-such-key").run()
    assert not at.success, "nothing found is not good news"
    assert at.info[0].value.startswith("No exception matches these filters. Clear one, or look the order up")


def test_a_scoped_agents_queue_opens_on_their_channel_and_names_each_order(
    monkeypatch: pytest.MonkeyPatch, sample_db: str
) -> None:
    at = open_app(monkeypatch, sample_db, "exceptions.py", user="pat")
    queue = at.dataframe[0].value
    assert set(queue["channel"]) == {"marketplace-b2b"}, "pat works the b2b channel only"
    assert "The queue opens on your scope (marketplace-b2b)" in texts(at)
    chooser = next(s for s in at.selectbox if s.label == "Open an exception")
    assert queue["order"].iloc[0] in chooser.options[0], "the chooser names the order, not only the category"
    next(m for m in at.multiselect if m.label == "Channel").set_value([]).run()
    assert set(at.dataframe[0].value["channel"]) > {"marketplace-b2b"}, "the rest can still be read"
    operations = open_app(monkeypatch, sample_db, "operations.py", user="pat")
    assert "You work marketplace-b2b: these figures are every channel's and partner's" in texts(operations)
    assert "You work" not in texts(open_app(monkeypatch, sample_db, "operations.py")), "alex works everything"
    next(m for m in at.multiselect if m.label == "Channel").set_value(["marketplace-amz"]).run()
    at = choose(at, "validation")
    assert "This exception is outside your scope (marketplace-b2b): you can read it; a lead acts on it." in texts(at)


def test_switching_the_demo_to_a_scoped_agent_opens_the_queue_on_their_scope(
    monkeypatch: pytest.MonkeyPatch, sample_db: str
) -> None:
    at = open_app(monkeypatch, sample_db, "exceptions.py")
    assert set(at.dataframe[0].value["channel"]) > {"marketplace-b2b"}, "the lead reads every channel"
    at.sidebar.selectbox[0].select("pat").run()
    assert set(at.dataframe[0].value["channel"]) == {"marketplace-b2b"}
    assert next(m for m in at.multiselect if m.label == "Channel").value == ["marketplace-b2b"]


def choose(at: AppTest, category: str) -> AppTest:
    """Open the first exception of ``category`` from the queue's chooser."""
    chooser = next(s for s in at.selectbox if s.label == "Open an exception")
    index = next(i for i, label in enumerate(chooser.options) if label.startswith(category.replace("_", " ")))
    return chooser.select_index(index).run()


def test_the_detail_shows_context_runbook_timeline_and_masked_payload(
    monkeypatch: pytest.MonkeyPatch, sample_db: str
) -> None:
    at = choose(open_app(monkeypatch, sample_db, "exceptions.py"), "dead_lettered")
    assert not at.exception
    shown = texts(at)
    assert "Runbook (dead lettered)" in shown and "then Replay it" in shown
    assert "Suggested action:** replay" in shown
    assert re.match(
        r"erp dead lettered: consumer rejected the message \d+ times: schema validation", read(at.header[0].value)
    )
    assert re.search(r"\*\*Customer promise:\*\* (shipped|not shipped)[^\n]*promised by \w{3} \d\d Nov", shown), shown
    assert "Across systems" in shown and "What the failing call sent (personal data masked)" in shown
    assert any('"original_type": "com.syncwatch.shipment.shipped"' in c.value for c in at.code)
    labels = {b.label for b in at.button}
    assert {"Replay", "Resolve", "Ignore", "Assign to me"} <= labels and not {"Retry", "Reroute"} & labels
    assert [b.label for b in at.button if b.proto.type == "primary"] == ["Replay"], "the runbook's action stands out"


def test_a_stuck_order_offers_no_retry_or_replay_and_no_action_stands_out(
    monkeypatch: pytest.MonkeyPatch, sample_db: str
) -> None:
    at = choose(open_app(monkeypatch, sample_db, "exceptions.py"), "stuck")
    labels = [b.label for b in at.button]
    assert "Retry" not in labels and "Replay" not in labels and {"Resolve", "Add note"} <= set(labels)
    assert not [b.label for b in at.button if b.proto.type == "primary"]
    facts = texts(at)
    assert "**Overdue since:**" in facts and "**Seen since:** nothing" in facts
    assert "**Last seen:**" not in facts, "its due time is no sighting"


def test_an_order_the_erp_rejected_reads_not_released_yet_for_its_partner(
    monkeypatch: pytest.MonkeyPatch, sample_db: str
) -> None:
    at = choose(open_app(monkeypatch, sample_db, "exceptions.py"), "validation")
    assert "**Partner:** not released yet" in texts(at)
    links = {p.proto.label: (p.proto.page, p.proto.query_string) for p in at.get("page_link")}
    page, query = links["Open the transaction: every system's view of it"]
    assert page == "search" and query.startswith("key=order%3A")


def test_an_executive_sees_kpis_first_and_no_buttons_or_admin(monkeypatch: pytest.MonkeyPatch, sample_db: str) -> None:
    at = open_app(monkeypatch, sample_db, user="kim")
    assert at.title[0].value == "KPIs"
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("admin.py")
    at.switch_page("exceptions.py").run()
    at = choose(at, "validation")
    assert not {"Retry", "Resolve", "Assign to me"} & {b.label for b in at.button}
    assert "kim (executive) can read this exception" in texts(at)


def test_an_agent_may_not_reroute(monkeypatch: pytest.MonkeyPatch, sample_db: str) -> None:
    at = open_app(monkeypatch, sample_db, user="sam")
    assert at.title[0].value == "Exceptions", "an agent lands on the queue"
    at = choose(at, "partner_unavailable")
    labels = {b.label for b in at.button}
    assert "Retry" in labels and "Reroute" not in labels
    assert not any(e.label.startswith("Bulk action") for e in at.expander)
    assert "The runbook suggests reroute, which a lead does: ask one." in texts(at)


def test_a_lead_reroutes_from_the_failing_partner_to_its_alternates(
    monkeypatch: pytest.MonkeyPatch, sample_db: str
) -> None:
    """The order's partner is empty while the release to it fails: every partner was offered, the
    failing one among them, and choosing it was refused."""
    from syncwatch.config import load_config

    at = choose(open_app(monkeypatch, sample_db, "exceptions.py"), "partner_unavailable")
    target = next(s for s in at.selectbox if s.label.startswith("Reroute from "))
    failing = target.label.removeprefix("Reroute from ").removesuffix(" to")
    assert f"**Failing:** {failing} · " in texts(at), "the partner the reroute moves from is the failing one"
    assert list(target.options) == list(load_config().file.partners[failing].alternates)
    assert failing not in target.options


def test_after_a_reroute_neither_retry_nor_a_second_reroute_is_offered(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str
) -> None:
    """Retry stayed on offer after a reroute, and sent the order to the 3PL it had left: open at both."""
    at = choose(open_app(monkeypatch, sample_copy, "exceptions.py"), "partner_unavailable")
    assert "Retry" in {b.label for b in at.button}
    opened = at.query_params["exception"]
    exception_id = opened[0] if isinstance(opened, list) else opened
    request = json.dumps({"partner": "3pl-fastship", "alternate": "3pl-parcelpro", "sales_order": "SO-1"})
    with sqlite3.connect(sample_copy.removeprefix("sqlite:///")) as conn:
        conn.execute(
            "INSERT INTO actions (id, exception_id, kind, actor, idempotency_key, status, attempts, request, outcome,"
            " requested_at) VALUES ('act-1', ?, 'reroute', 'alex', 'k-1', 'succeeded', 1, ?, ?, '2026-11-08 23:00:00')",
            (exception_id, request, json.dumps({"partner_ref": "PP-7 ![t](https://evil.example/t.png)"})),
        )
    at.run()
    assert not {"Retry", "Reroute"} & {b.label for b in at.button}
    [said] = [c.value for c in at.caption if "rerouted it to" in c.value]
    assert read(said).startswith("Alex rerouted it to 3pl-parcelpro (PP-7 ![t](https://evil.example/t.png)) at Sun")
    assert "](https://" not in said and read(said).endswith(
        ": no retry or second reroute, which would fulfil the order twice."
    )


def test_search_finds_a_transaction_by_its_tracking_number(monkeypatch: pytest.MonkeyPatch, sample_db: str) -> None:
    at = open_app(monkeypatch, sample_db, "search.py")
    at.text_input[0].input("944139036750").run()
    assert not at.exception
    assert read(at.header[0].value) == "order:215-2680494-0958771"
    assert "Every call, log line and event, across systems" in texts(at), "in a manager's words, not 'observation'"
    context = next(read(m.value) for m in at.markdown if m.value.startswith("**Channel**"))
    assert "**Customer** AMZ-RETAIL" in context and re.search(r"\*\*Value\*\* \$[\d,]+\.\d\d", context), context
    assert re.search(r"\*\*Customer promise\*\* shipped \w{3} \d\d Nov \d\d:\d\d UTC, promised by .*: kept", context)
    stages = next(d.value for d in at.dataframe if "stage" in d.value.columns)
    assert list(stages["stage"])[:2] == ["captured", "accepted by ERP"] and set(stages["SLA"]) == {"Met"}
    seen = next(d.value for d in at.dataframe if "took (ms)" in d.value.columns)
    assert list(seen.columns) == ["when", "system", "what", "operation", "result", "took (ms)", "error", "trace"]
    assert set(seen["what"]) <= {"call", "log line", "event"} and seen["when"].str.endswith(" UTC").all()
    assert any(e.label.endswith("observations: each call, log line and event") for e in at.expander)
    at.text_input[0].input("nothing-like-this").run()
    assert "No transaction carries a key like 'nothing-like-this'." in texts(at)


def test_a_key_typed_in_the_wrong_case_or_without_its_prefix_offers_the_keys_containing_it(
    monkeypatch: pytest.MonkeyPatch, sample_db: str
) -> None:
    at = open_app(monkeypatch, sample_db, "search.py")
    at.text_input[0].input("so-109458").run()
    assert read(at.header[0].value).startswith("order:"), "an id typed in lower case opens its order"
    at.text_input[0].input("109458").run()
    assert "No key is exactly '109458'; these contain it." in texts(at)
    offered = next(d.value for d in at.dataframe if "key" in d.value.columns)
    assert "SO-109458" in set(offered["key"]) and "erp order" in set(offered["type"])
    at.text_input[0].input("945").run()
    assert "Type 4 characters or more to look for keys containing it." in texts(at)
    at.text_input[0].input("SH-50").run()
    assert "The first 10 are shown: type more of it to narrow them." in texts(at), "thousands contain it"
    assert len(next(d.value for d in at.dataframe if "key" in d.value.columns)) == 10
    at.text_input[0].input("order:po-451311").run()
    assert read(at.header[0].value).startswith("order:"), "a transaction's own id typed in lower case opens it"


def test_a_customer_number_lists_that_customers_orders(monkeypatch: pytest.MonkeyPatch, sample_db: str) -> None:
    """A caller who knows their account number, not the order's, found nothing."""
    with sqlite3.connect(sample_db.removeprefix("sqlite:///")) as conn:
        customer, orders = conn.execute(
            "SELECT customer, count(*) FROM transactions WHERE customer IS NOT NULL GROUP BY customer "
            "HAVING count(*) BETWEEN 2 AND 199 ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
    at = open_app(monkeypatch, sample_db, "search.py")
    at.text_input[0].input(f" {customer.lower()} ").run()
    assert f"Customer {customer}: {orders} orders, newest first" in [read(h.value) for h in at.subheader]
    listed = next(d.value for d in at.dataframe if "transaction" in d.value.columns)
    assert len(listed) == orders and listed["transaction"].str.startswith("order:").all()


def test_a_partners_text_and_a_crafted_link_are_shown_as_written_never_as_links_or_images(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str
) -> None:
    """A status message rendered a 'Sign in again' link and an image that called home; so did a
    search link crafted to say 'Session expired'."""
    bait = "[Sign in again](https://evil.example/login) ![x](https://evil.example/b.png) :red[**URGENT**]"
    with sqlite3.connect(sample_copy.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE exceptions SET summary = ? WHERE category = 'dead_lettered'", (bait,))
    at = choose(open_app(monkeypatch, sample_copy, "exceptions.py"), "dead_lettered")
    assert read(at.header[0].value) == bait and "](https://" not in at.header[0].value
    at = open_app(monkeypatch, sample_copy, "search.py")
    at.query_params["key"] = "] **Session expired**: [sign in again](https://evil.example/login) ["
    at.run()
    notices = [i.value for i in at.info]
    assert notices and not any("](https://" in n or "**Session" in n for n in notices), notices


def test_search_takes_each_new_key_another_page_brings_and_keeps_what_was_typed(
    monkeypatch: pytest.MonkeyPatch, sample_db: str
) -> None:
    at = open_app(monkeypatch, sample_db, "search.py")
    at.query_params["key"] = "944139036750"
    at.run()
    assert read(at.header[0].value) == "order:215-2680494-0958771"
    at.text_input[0].input("nothing-like-this").run()
    assert at.text_input[0].value == "nothing-like-this", "what the person typed is not replaced by the old link"
    at.query_params["key"] = "order:215-2680494-0958771"  # another page opens a transaction in this session
    at.run()
    assert at.text_input[0].value == "order:215-2680494-0958771"
    assert read(at.header[0].value) == "order:215-2680494-0958771"


def test_a_link_to_an_exception_that_no_longer_applies_says_why_and_where_to_look(
    monkeypatch: pytest.MonkeyPatch, sample_db: str
) -> None:
    at = open_app(monkeypatch, sample_db, "exceptions.py")
    at.query_params["exception"] = "exc-0000000000000000"
    at.run()
    [said] = [read(w.value) for w in at.warning if "no exception" in w.value]
    assert said.startswith("There is no exception exc-0000000000000000 now.")
    assert "no longer applies" in said and said.endswith("Transaction search shows where its order stands.")


def test_a_transaction_without_its_order_number_says_why_it_stays_open(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str
) -> None:
    store = Store.open(sample_copy)
    at = datetime(2026, 11, 8, 23, 50, tzinfo=UTC)
    store.write_observations([span(9_000_001, "POST /invoices", "erp", at, erp_order="SO-ORPHAN-1")])
    Correlator(store, load_config(environ={}), clock=lambda: at).run_pass()
    store.close()
    app = open_app(monkeypatch, sample_copy, "search.py")
    app.query_params["key"] = "SO-ORPHAN-1"
    app.run()
    assert read(app.header[0].value) == "order:~erp_order:SO-ORPHAN-1"
    [warning] = [w.value for w in app.warning]
    assert warning.startswith(
        "None of the keys every order starts with (Marketplace order, Purchase order, Shopify order): what is below"
    )
    app.query_params["key"] = "944139036750"
    app.run()
    assert not app.warning, "an order with its own number needs no such word"


def test_a_backordered_order_shows_which_lines_shipped_and_which_wait(
    monkeypatch: pytest.MonkeyPatch, sample_db: str
) -> None:
    at = open_app(monkeypatch, sample_db, "search.py")
    at.text_input[0].input("134-5657108-4762385").run()
    assert not at.exception
    assert "1 of 2 lines shipped; RUG-3530 is backordered, expected by Wed 11 Nov 20:58 UTC." in texts(at)
    shipments = next(d.value for d in at.dataframe if "shipment" in d.value.columns)
    assert list(shipments["shipment"]) == ["SH-5083312"] and list(shipments["lines"]) == ["BED-3907 × 1"]


def test_endpoints_put_failing_ones_first(monkeypatch: pytest.MonkeyPatch, sample_db: str) -> None:
    at = open_app(monkeypatch, sample_db, "endpoints.py")
    table = at.dataframe[0].value
    assert table["health"].iloc[0] == "failing"
    [timeline] = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert timeline["layout"]["xaxis"]["title"]["text"] == "UTC", "every time on the pages says its zone"
    assert "Failing: an error rate over 5% (no answer, or 5xx); recovering: failing in this window, but no" in texts(at)
    assert [bar["name"] for bar in timeline["data"]] == ["ok", "refused (4xx)", "429 (slow down)", "failed"]
    assert (table["error rate"] > 0.05).eq(table["health"] == "failing").all(), "the rate shown is the one judged"
    assert list(table["health"]) == sorted(table["health"], key=["failing", "recovering", "degraded", "healthy"].index)
    system = next(s for s in at.selectbox if s.label == "System")
    system.set_value("wms").run()
    assert set(at.dataframe[0].value["system"]) == {"wms"}
    assert not any("its own actions" in c.value for c in at.caption), "no action was taken in the sample week"
    releases = table[table["endpoint"] == "POST /fulfillment-orders"]  # read before the filter: every system
    assert set(releases["seen by"]) == {""}, "the 3PLs report their releases themselves: the ERP's view is an echo"
    next(s for s in at.selectbox if s.label == "System").set_value("all systems").run()
    next(t for t in at.toggle if t.label.startswith("Callers' views of endpoints that report themselves")).set_value(
        True
    ).run()
    everything = at.dataframe[0].value
    seen = everything[(everything["endpoint"] == "POST /fulfillment-orders") & (everything["seen by"] == "erp")]
    assert set(seen["system"]) == {"3pl-fastship", "3pl-parcelpro"}, "the ERP's calls to each 3PL are that 3PL's row"


def test_an_endpoint_fails_only_when_it_does_not_answer_and_recovers_when_it_answers_again() -> None:
    """A marketplace throttling (429) and an ERP refusing unknown SKUs (422) work: they read failing.
    A 3PL that answered again after its outage read failing for the rest of the hour."""
    at = datetime(2026, 11, 8, 23, 0, tzinfo=UTC)
    stats = pd.DataFrame(
        {
            "system": ["marketplace-a", "erp", "3pl-a", "3pl-b"],
            "operation": ["GET /orders", "POST /sales-orders", "POST /fulfillment-orders", "POST /fulfillment-orders"],
            "peer": [""] * 4,
            "gateway": [False] * 4,
            "logged": [False] * 4,
            "requests": [100, 100, 100, 100],
            "errors": [40, 10, 50, 50],
            "throttled": [38, 0, 0, 0],
            "rejected": [0, 10, 0, 0],
            "failed": [2, 0, 50, 50],
            "p95_ms": [120.0, 90.0, 90.0, 90.0],
            "p50_ms": [40.0, 30.0, 30.0, 30.0],
            "last_error": ["429 Too Many Requests", "unknown SKU", "503", "503"],
            "last_error_at": [at, at, at + timedelta(minutes=6), at],  # 3pl-a refused one since it answered again
            "last_failed_at": [at - timedelta(minutes=30), at - timedelta(minutes=30), at, at],
            "last_ok_at": [at - timedelta(minutes=1), at, at + timedelta(minutes=5), at - timedelta(minutes=20)],
        }
    )
    flapping = stats.iloc[[2]].assign(system="3pl-c", last_failed_at=at + timedelta(minutes=8))
    page = Page(store=None, config=load_config(None), viewer=None, now=at + timedelta(minutes=10))  # type: ignore[arg-type]
    table = health_table(pd.concat([stats, flapping]), timedelta(hours=1), page).set_index("system")
    columns = ["health", "error rate", "errors", "refused", "429s"]
    assert table.loc["marketplace-a", columns].tolist() == ["degraded", 0.02, 2, 0, 38]
    assert table.loc["erp", columns].tolist() == ["degraded", 0.0, 0, 10, 0]
    assert table.loc["3pl-a", columns].tolist() == ["recovering", 0.5, 50, 0, 0], "a refusal since is an answer"
    assert table.loc["3pl-b", columns].tolist() == ["failing", 0.5, 50, 0, 0]
    assert table.loc["3pl-c", "health"] == "failing", "failing two minutes ago: by turns, not recovering"
    assert list(table.index)[:3] == ["3pl-b", "3pl-c", "3pl-a"], "failing first, then recovering"


def test_a_system_calling_its_own_endpoint_is_one_row() -> None:
    """The ERP allocating its orders over HTTP reported each call as its client and as its server."""
    at = datetime(2026, 11, 8, 23, 0, tzinfo=UTC)
    row = {"system": "erp", "operation": "POST /invoices", "gateway": False, "logged": False, "errors": 0}
    row["throttled"] = 0
    stats = pd.DataFrame(
        [
            {**row, "peer": "", "requests": 15},
            {**row, "peer": "erp.internal", "requests": 14},
        ]
    ).assign(rejected=0, failed=0, p95_ms=90.0, p50_ms=30.0, last_error="", last_error_at=pd.NaT)
    stats = stats.assign(last_failed_at=pd.NaT, last_ok_at=at)
    page = Page(store=None, config=load_config(None), viewer=None, now=at)  # type: ignore[arg-type]
    table = health_table(stats, timedelta(hours=1), page)
    assert table[["system", "endpoint", "seen by", "requests"]].values.tolist() == [["erp", "POST /invoices", "", 15]]


def test_a_callers_view_is_folded_only_when_it_saw_the_endpoint_no_worse() -> None:
    table = pd.DataFrame(
        {
            "system": ["3pl-a", "3pl-a", "3pl-b", "3pl-b", "3pl-c"],
            "endpoint": ["POST /orders"] * 5,
            "seen by": ["", "erp", "", "erp", "erp"],
            "health": ["failing", "failing", "healthy", "failing", "failing"],
        }
    )
    assert list(echoes_of_own_rows(table)) == [False, True, False, False, False]


def test_syncwatchs_own_failed_calls_read_as_the_partners_answer(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str
) -> None:
    store = Store.open(sample_copy)
    at = datetime(2026, 11, 8, 23, 50, tzinfo=UTC)
    retried = span(9_000_001, "POST /sales-orders", "syncwatch", at, status=503)
    store.write_observations([replace(retried, attributes={"span.kind": "client", "syncwatch.partner": "erp"})])
    store.close()
    page = open_app(monkeypatch, sample_copy, "endpoints.py")
    table = page.dataframe[0].value
    ours = table[table["seen by"] == "syncwatch"]
    assert list(ours["system"]) == ["erp"] and list(ours["health"]) == ["failing"], "the partner's answer"
    [said] = [c.value for c in page.caption if "its own actions" in c.value]
    assert said.endswith("are its own actions' calls (retries, reroutes, lookups), not syncwatch failing.")


def test_a_headline_share_of_a_handful_of_orders_is_not_shown(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str
) -> None:
    """Seven decided orders, all late, read 'SLA attainment 0.0%' on the tile, while the charts below
    leave out a share of fewer than ten."""
    from correlator import kpis

    thin = {"sla_attainment": 0.0, "decided": 7, "exception_rate": 0.5, "transactions": 40}
    monkeypatch.setattr(kpis, "as_it_stood", lambda *args: thin)  # the page imports it when it runs
    at = open_app(monkeypatch, sample_copy, "kpis.py")
    tiles = {m.label: m for m in at.metric}
    assert tiles["SLA attainment"].value == "—" and tiles["SLA attainment"].proto.help.endswith(
        "Fewer than 10 orders so far this week: not shown."
    )
    assert tiles["Exception rate"].value == "50.0%", "a share of 40 orders is shown"


def test_on_monday_morning_the_kpi_tiles_read_last_week_not_dashes(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str
) -> None:
    """At 08:00 on Monday 'this week' held no orders, so every tile read '—' on the morning the page
    is read most, and last week's figures were nowhere on it."""
    with sqlite3.connect(sample_copy.removeprefix("sqlite:///")) as conn:  # the correlator's clock: Monday 08:00
        conn.execute("UPDATE transactions SET updated_at = '2026-11-09 08:00:00.000000' WHERE rowid = 1")
    at = open_app(monkeypatch, sample_copy, "kpis.py", user="kim")
    assert "Last week (Mon 02 Nov to Sun 08 Nov, UTC) against the week before as it stood a week ago" in texts(at)
    tiles = {m.label: m for m in at.metric}
    assert re.fullmatch(r"\d+\.\d%", tiles["SLA attainment"].value), tiles["SLA attainment"].value
    assert tiles["Exception rate"].proto.help.startswith("Exception rate is the share of orders with at least one")
    next(s for s in at.selectbox if s.label == "Range").set_value("last complete week").run()
    table = next(d.value for d in at.dataframe if "sla_attainment" in d.value.columns)
    assert [p.split(" ")[0] for p in table["period"]] == [f"2026-11-0{d}" for d in range(2, 9)], "Monday to Sunday"
    assert not [p for p in table["period"] if "so far" in p or "from" in p], "whole days, today not among them"
    next(b for b in at.button_group if b.label == "By").set_value("partner").run()
    assert "An order split over partners counts under the first partner it was released to." in texts(at)


def test_kpis_by_channel_per_week_offer_a_csv(monkeypatch: pytest.MonkeyPatch, sample_db: str) -> None:
    at = open_app(monkeypatch, sample_db, "kpis.py")
    by = next(b for b in at.button_group if b.label == "By")
    by.set_value("channel").run()
    table = next(d.value for d in at.dataframe if "sla_attainment" in d.value.columns)
    assert set(table["group"]) == {"marketplace-amz", "marketplace-b2b"}
    assert "Inventory latency is measured per inventory sync, which has no channel or partner" in texts(at)
    attainment = next(m for m in at.metric if m.label == "SLA attainment")
    assert attainment.proto.help.startswith("SLA attainment is the share of orders whose SLA is decided")
    assert at.get("download_button")


def test_kpis_by_partner_chart_partners_only_and_compare_like_with_like(
    monkeypatch: pytest.MonkeyPatch, sample_db: str
) -> None:
    """Orders held before release charted as a partner at 100 % exceptions flattened every real
    partner's line; the headline compared a week so far with a whole one."""
    at = open_app(monkeypatch, sample_db, "kpis.py")
    next(b for b in at.button_group if b.label == "By").set_value("partner").run()
    table = next(d.value for d in at.dataframe if "sla_attainment" in d.value.columns)
    assert "not released yet" in set(table["group"])
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    charted = {trace["name"] for spec in specs for trace in spec["data"]}
    assert "3pl-fastship" in charted and not [name for name in charted if "not released" in name], charted
    assert "Orders not released yet to a partner are in the table below, not in the charts." in texts(at)
    assert "against last week until the same day and time" in texts(at) and "as it stood then" in texts(at)
    assert "first order in the history syncwatch keeps (the last 90 days)" in texts(at), "not its go-live"


def test_kpi_trends_of_durations_show_the_p90_beside_the_p50(monkeypatch: pytest.MonkeyPatch, sample_db: str) -> None:
    at = open_app(monkeypatch, sample_db, "kpis.py")
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    cycle = next(s for s in specs if s["layout"]["title"]["text"].startswith("Cycle time"))
    assert cycle["layout"]["title"]["text"] == "Cycle time (h): p50, p90 dashed"
    p50, p90 = (plotted({t["name"]: t["y"] for t in cycle["data"]}[name]) for name in ("all", "all p90"))
    assert len(p50) == len(p90) >= 5 and all(slow >= typical for slow, typical in zip(p90, p50, strict=True))
    [tails] = [c.value for c in at.caption if c.value.startswith("p90 this week")]
    pattern = r"p90 this week, the slowest tenth: cycle time [\d,.]+ h, confirmation lag [\d,.]+ min, "
    assert re.fullmatch(pattern + r"inventory latency [\d,.]+ min\.", tails), tails


def test_kpis_mark_the_day_still_running_so_a_half_day_is_no_dip(
    monkeypatch: pytest.MonkeyPatch, sample_db: str
) -> None:
    at = open_app(monkeypatch, sample_db, "kpis.py")
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    attainment = next(s for s in specs if s["layout"]["title"]["text"] == "SLA attainment")
    dotted, solid = attainment["data"]
    assert dotted["marker"]["symbol"][-1] == "circle-open" and set(dotted["marker"]["symbol"][:-1]) == {"circle"}
    assert dotted["line"]["dash"] == "dot" and "dash" not in solid["line"], "a dotted line, not the solid one"
    final, every = plotted(solid["y"]), plotted(dotted["y"])
    assert final[:-1] == every[:-1] and pd.isna(final[-1]), "the solid line joins only the final days"
    periods = list(at.dataframe[0].value["period"])
    assert periods[-1] == f"{dotted['x'][-1]} (so far)" and not any("so far" in p for p in periods[:-1])
    assert "Today is not over, and a day whose orders are still finishing (over 5% of them" in texts(at)
    next(c for c in at.get("button_group") if "week" in str(c.proto)).set_value("week").run()
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    line, _ = next(s for s in specs if s["layout"]["title"]["text"] == "SLA attainment")["data"]
    labels = list(at.dataframe[0].value["period"])
    hollow = [p for p, symbol in zip(labels, line["marker"]["symbol"], strict=True) if symbol == "circle-open"]
    assert hollow == [p for p in labels if "(from " in p or "(so far)" in p], "every part of a week, and only those"


def plotted(values: list | dict) -> list[float]:
    """A trace's values as a figure's JSON holds them: a list, or plotly's base64 typed array."""
    if isinstance(values, list):
        return values
    return list(np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]))


def test_admin_shows_settings_without_secrets(monkeypatch: pytest.MonkeyPatch, sample_db: str) -> None:
    monkeypatch.setenv("SYNCWATCH_TOKEN_ERP", "s3cr3t-token-value")
    at = open_app(monkeypatch, sample_db, "admin.py")
    rendered = "\n".join(d.value.to_csv() for d in at.dataframe)
    assert "SYNCWATCH_TOKEN_ERP" in rendered and "s3cr3t-token-value" not in rendered


def test_quarantined_bytes_are_masked_in_the_text_and_the_hex_view(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str
) -> None:
    store = Store.open(sample_copy)
    raw = b"\x0a\x0c" + b"reach jane.doe@example.com" + b"\xff"  # half a protobuf, with an email in it
    store.quarantine([QuarantineItem("otlp:/v1/traces", "truncated protobuf", raw, None, "application/x-protobuf")])
    store.close()
    at = open_app(monkeypatch, sample_copy, "admin.py")
    shown = "\n".join(c.value for c in at.code)
    assert "jane.doe" not in shown and b"jane.doe".hex() not in shown.replace(" ", "").replace("\n", "")
    assert "00000000  0a 0c 72 65 61 63 68 20 2a 2a" in shown, (
        "the bytes around it stay readable in hex, the email starred"
    )
    assert "..reach ***" in shown, "the printable bytes beside them, as text"


def test_admin_counts_an_input_rejected_twice_once_and_masks_emails_in_reasons(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str
) -> None:
    store = Store.open(sample_copy)
    bad = QuarantineItem("webhook/shopify", "customer jane.doe@example.com has no order id", b"{}", "body")
    store.quarantine([bad])
    store.quarantine([bad])
    store.close()
    at = open_app(monkeypatch, sample_copy, "admin.py")
    assert any("1 rejected input kept with its reason, rejected 2 times in all" in c.value for c in at.caption)
    reasons, recent = (d.value for d in at.dataframe[:2])
    assert (reasons["items"].tolist(), reasons["deliveries"].tolist()) == ([1], [2])
    assert recent["deliveries"].tolist() == [2]
    shown = "\n".join(d.value.to_csv() for d in at.dataframe[:2])
    assert "jane.doe" not in shown and "customer j•••@••• has no order id" in shown


def test_admin_shows_which_alerts_went_out_and_why_the_others_did_not(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str
) -> None:
    with sqlite3.connect(sample_copy.removeprefix("sqlite:///")) as conn:
        raised = conn.execute("SELECT count(*) FROM alerts").fetchone()[0]
        conn.execute("UPDATE alerts SET sent_at = created_at, attempts = 1 WHERE id % 2 = 0")
        conn.execute("UPDATE alerts SET attempts = 10, last_error = 'HTTPStatusError 404' WHERE id = 1")
    at = open_app(monkeypatch, sample_copy, "admin.py")
    waiting = raised - raised // 2
    [warning] = [w.value for w in at.warning if "not delivered" in w.value]
    assert warning.startswith(f"{waiting} alerts not delivered: `serve` posts alerts to the URL in its environment")
    delivery = next(d.value for d in at.dataframe if "delivery" in d.value.columns)["delivery"].tolist()
    assert delivery.count("sent") == raised // 2 and "gave up after 10 attempts: HTTPStatusError 404" in delivery
    assert delivery.count("waiting") == waiting - 1
    next(b for b in at.button if b.label == "Deliver the 1 alert given up on again").click().run()
    assert "1 alert will be delivered at `serve`'s next run." in [s.value for s in at.success]
    delivery = next(d.value for d in at.dataframe if "delivery" in d.value.columns)["delivery"].tolist()
    assert delivery.count("waiting") == waiting and not [b for b in at.button if b.label.startswith("Deliver the")]
    assert audit_rows(sample_copy)[-1] == ("alex", "deliver alerts", "succeeded")


def audit_rows(url: str) -> list[tuple[str, str, str]]:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return conn.execute("SELECT actor, action, result FROM audit_log ORDER BY id").fetchall()


def test_retry_goes_through_the_action_layer_and_shows_the_outcome(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str
) -> None:
    """No simulator answers here, so the ERP's retry fails: the page says why, and the audit log has it."""
    at = choose(open_app(monkeypatch, sample_copy, "exceptions.py"), "validation")
    next(b for b in at.button if b.label == "Retry").click().run()
    assert not at.exception, [e.value for e in at.exception]
    outcome = [*at.success, *at.error]
    assert len(outcome) == 1 and read(outcome[0].value).startswith("**Retry** failed: "), [o.value for o in outcome]
    assert read(outcome[0].value).endswith("; the exception stays open."), outcome[0].value
    assert outcome[0].value.count("open") == 1, "said once"
    assert ("alex", "retry") in {(actor, action) for actor, action, _ in audit_rows(sample_copy)}
    at.switch_page("admin.py").run()
    log = next(d.value for d in at.dataframe if "why" in d.value.columns)
    failed = log[(log["action"] == "retry") & (log["result"] == "failed")]
    assert len(failed) == 1 and failed["why"].iloc[0], "a sent action's failure says why, as a refusal does"


def test_assign_to_me_shows_the_new_assignee(monkeypatch: pytest.MonkeyPatch, sample_copy: str) -> None:
    at = choose(open_app(monkeypatch, sample_copy, "exceptions.py", user="sam"), "dead_lettered")
    next(b for b in at.button if b.label == "Assign to me").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.success and at.success[0].value.startswith("**Assign:**")
    assert "**Assignee:** sam" in texts(at)


def test_a_lead_hands_one_exception_to_an_agent(monkeypatch: pytest.MonkeyPatch, sample_copy: str) -> None:
    at = choose(open_app(monkeypatch, sample_copy, "exceptions.py"), "dead_lettered")
    assert "Assign to me" in {b.label for b in at.button}, "the lead is offered first"
    chooser = next(s for s in at.selectbox if s.label == "Assign to" and "sam" in s.options)
    chooser.select("sam").run()
    next(b for b in at.button if b.label == "Assign to sam").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.success and at.success[0].value.startswith("**Assign:** Assigned to sam")
    assert "**Assignee:** sam" in texts(at)
    assert next(b for b in at.button if b.label == "Assign to sam").disabled, "it is sam's already"


def test_a_lead_plans_a_bulk_assign_to_an_agent(monkeypatch: pytest.MonkeyPatch, sample_copy: str) -> None:
    at = open_app(monkeypatch, sample_copy, "exceptions.py")
    next(s for s in at.selectbox if s.label == "Action").select("assign").run()
    assignee = next(s for s in at.selectbox if s.label == "Assign to")
    assert assignee.options[0] == "alex" and "kim" not in assignee.options
    assignee.select("sam").run()
    next(b for b in at.button if b.label == "Plan").click().run()
    assert not at.exception, [e.value for e in at.exception]
    plan = next(w.value for w in at.warning if w.value.startswith("**Assign"))
    assert " exceptions to sam.**" in plan
    assert any(b.label.startswith("Run assign on ") for b in at.button)


def test_a_bulk_resolve_asks_for_the_note_it_records(monkeypatch: pytest.MonkeyPatch, sample_copy: str) -> None:
    at = open_app(monkeypatch, sample_copy, "exceptions.py")
    next(s for s in at.selectbox if s.label == "Action").select("resolve").run()
    next(b for b in at.button if b.label == "Plan").click().run()
    run = next(b for b in at.button if b.label.startswith("Run resolve on "))
    assert run.disabled and "Write the note first: resolve records why, on every exception." in texts(at)
    next(t for t in at.text_input if t.label.startswith("Note (why")).input("carrier confirmed by phone").run()
    assert not next(b for b in at.button if b.label.startswith("Run resolve on ")).disabled


def test_a_bulk_plan_is_dropped_when_the_filter_changes_so_a_run_acts_only_on_what_is_shown(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str
) -> None:
    """Planned on a whole channel (141), then narrowed to 22 dead letters: 'Run resolve on 141'
    stayed, and resolved every one of the 141."""
    at = open_app(monkeypatch, sample_copy, "exceptions.py")
    next(s for s in at.selectbox if s.label == "Action").select("resolve").run()
    next(b for b in at.button if b.label == "Plan").click().run()
    assert any(b.label.startswith("Run resolve on ") for b in at.button)
    next(m for m in at.multiselect if m.label == "Category").select("dead_lettered").run()
    assert not any(b.label.startswith("Run resolve on ") for b in at.button), "the old plan cannot be run"
    assert "The filters or the action changed since the plan: press Plan for what matches now." in texts(at)
    next(b for b in at.button if b.label == "Plan").click().run()
    plan = next(w.value for w in at.warning if w.value.startswith("**Resolve"))
    heading = next(e.label for e in at.expander if e.label.startswith("Bulk action on all "))
    assert plan.startswith(f"**Resolve {heading.split()[4]} exceptions.**"), (plan, heading)
    at.run()
    assert any(b.label.startswith("Run resolve on ") for b in at.button), "the same filter keeps its plan"


def sign_in_form(monkeypatch: pytest.MonkeyPatch, db: str, users: Path) -> AppTest:
    monkeypatch.setenv("SYNCWATCH_DB", db)
    monkeypatch.setenv("SYNCWATCH_DASHBOARD_USERS", str(users))
    monkeypatch.delenv("SYNCWATCH_DASHBOARD_DEMO_USER", raising=False)
    monkeypatch.delenv("SYNCWATCH_CONFIG", raising=False)
    return AppTest.from_file(APP, default_timeout=120).run()


def attempt(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input[0].input(name)
    at.text_input[1].input(password)
    return at.button[0].click().run()


def test_sign_ins_are_audited_and_a_name_refused_five_times_is_locked(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str, tmp_path: Path
) -> None:
    users = tmp_path / "users.txt"
    add_user(users, "alex", "right-password-1")
    add_user(users, "sam", "sams-password-1")
    at = sign_in_form(monkeypatch, sample_copy, users)
    for _ in range(5):
        attempt(at, "alex", "a-guess")
        assert [e.value for e in at.error] == ["That user name and password do not match."]
    attempt(at, "alex", "right-password-1")
    assert at.error[0].value == "Too many failed sign-ins for this user name from here: try again in 15 minutes."
    assert not any("Signed in as" in c.value for c in at.sidebar.caption), "locked: even the right password waits"
    attempt(at, "sam", "sams-password-1")
    assert any("Signed in as **sam" in c.value for c in at.sidebar.caption), "others are not locked"
    with sqlite3.connect(sample_copy.removeprefix("sqlite:///")) as conn:
        audited = conn.execute(
            "SELECT actor, result, request_summary FROM audit_log WHERE action = 'sign_in' ORDER BY id"
        )
        rows = audited.fetchall()
        assert [r[:2] for r in rows] == [("alex", "refused")] * 6 + [("sam", "succeeded")]
        assert rows[5][2] == "local sign-in: locked: too many refused sign-ins from this client"
    monkeypatch.setattr(auth, "LOCKOUT_WINDOW", timedelta(0))  # the audit log refuses edits: time passes here
    at = sign_in_form(monkeypatch, sample_copy, users)
    attempt(at, "alex", "right-password-1")
    assert any("Signed in as **alex" in c.value for c in at.sidebar.caption), "the window passed: alex is back"


def test_a_stranger_guessing_a_name_locks_out_only_their_own_client(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str, tmp_path: Path
) -> None:
    """The lockout was by name alone: anyone typing a lead's name five times locked the lead out,
    and every refusal while locked counted again, so a stranger could keep the lead out for good."""
    users = tmp_path / "users.txt"
    add_user(users, "alex", "right-password-1")
    client = {"address": "203.0.113.9"}
    monkeypatch.setattr(auth, "client_address", lambda: client["address"])
    at = sign_in_form(monkeypatch, sample_copy, users)
    for _ in range(5):
        attempt(at, "alex", "a-guess")
    for _ in range(3):  # kept trying while locked: refused, audited, and not counted as guesses
        attempt(at, "alex", "a-guess")
        assert at.error[0].value.startswith("Too many failed sign-ins for this user name from here")
    client["address"] = "198.51.100.7"
    attempt(at, "alex", "right-password-1")
    assert any("Signed in as **alex" in c.value for c in at.sidebar.caption), "alex's own client is not locked"
    with sqlite3.connect(sample_copy.removeprefix("sqlite:///")) as conn:
        clients = conn.execute(
            "SELECT json_extract(detail, '$.client'), result FROM audit_log WHERE action = 'sign_in' ORDER BY id"
        ).fetchall()
    assert clients == [("203.0.113.9", "refused")] * 8 + [("198.51.100.7", "succeeded")]
    at = open_app(monkeypatch, sample_copy, "admin.py")
    audit = next(df.value for df in at.dataframe if "client" in df.value.columns)
    assert audit["client"].iloc[0] == "198.51.100.7"


def test_guesses_spread_over_many_clients_lock_the_name_everywhere(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str, tmp_path: Path
) -> None:
    users = tmp_path / "users.txt"
    add_user(users, "alex", "right-password-1")
    client = {"address": ""}
    monkeypatch.setattr(auth, "client_address", lambda: client["address"])
    at = sign_in_form(monkeypatch, sample_copy, users)
    for n in range(auth.LOCKOUT_ANYWHERE):
        client["address"] = f"192.0.2.{n // 4}"  # four guesses each: no one client reaches its own lock
        attempt(at, "alex", "a-guess")
        assert [e.value for e in at.error] == ["That user name and password do not match."]
    client["address"] = "198.51.100.7"
    attempt(at, "alex", "right-password-1")
    assert at.error[0].value == "Too many failed sign-ins for this user name: try again in 15 minutes."
    assert not any("Signed in as" in c.value for c in at.sidebar.caption)


def test_no_sign_in_while_the_database_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without the database no lockout is consulted and nothing is audited: guesses went unlimited and unseen."""
    users = tmp_path / "users.txt"
    add_user(users, "alex", "right-password-1")
    at = sign_in_form(monkeypatch, f"sqlite:///{tmp_path / 'gone.db'}", users)
    attempt(at, "alex", "right-password-1")
    assert at.error[0].value.startswith("Sign-in waits for the database")
    assert any("The database is not ready" in w.value for w in at.warning)
    assert not any("Signed in as" in c.value for c in at.sidebar.caption)


def test_every_pick_in_the_chooser_opens_that_exception(monkeypatch: pytest.MonkeyPatch, sample_db: str) -> None:
    """The chooser was a new widget after each pick (its index followed the last one), so every
    other exception an agent picked was dropped and the previous one stayed open."""
    at = open_app(monkeypatch, sample_db, "exceptions.py", user="sam")
    opened = []
    for category in ("dead_lettered", "partner_unavailable", "dead_lettered", "timeout"):
        choose(at, category)
        opened.append(next(s for s in at.selectbox if s.label == "Open an exception").value)
        assert at.query_params["exception"] in (opened[-1], [opened[-1]])
    assert opened[0] == opened[2] and len({opened[0], opened[1], opened[3]}) == 3, opened


def test_a_pick_in_the_chooser_unticks_the_queue_row_ticked_for_another(
    monkeypatch: pytest.MonkeyPatch, sample_db: str
) -> None:
    """The row stayed ticked after the chooser opened another exception, so a click on it only
    unticked it (the browser test clicks it for real; here the browser's tick is set by hand)."""
    at = open_app(monkeypatch, sample_db, "exceptions.py", user="sam")
    next(s for s in at.selectbox if s.label == "Open an exception").select_index(0).run()
    ticked = next(s for s in at.selectbox if s.label == "Open an exception").value
    at.session_state["exception_queue_ticked"] = (0, ticked)  # as a click on the queue's first row leaves it
    at.session_state["exception_queue_generation"] = 3
    at.session_state["exception_queue_3"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert at.session_state["exception_queue_ticked"] == (0, ticked), "the tick is kept while its exception is open"
    next(s for s in at.selectbox if s.label == "Open an exception").select_index(1).run()
    picked = next(s for s in at.selectbox if s.label == "Open an exception").value
    assert picked != ticked and at.query_params["exception"] in (picked, [picked])
    assert at.session_state["exception_queue_ticked"] is None
    assert at.session_state["exception_queue_generation"] == 4, "the table is drawn anew, without the tick"


def test_a_note_half_typed_on_one_exception_is_there_after_opening_another(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str
) -> None:
    """Streamlit forgets the state of a widget a run no longer draws: the note was gone on return."""

    def note_box() -> Any:
        return next(t for t in at.text_input if t.label.startswith("Note"))

    at = choose(open_app(monkeypatch, sample_copy, "exceptions.py", user="sam"), "dead_lettered")
    first = note_box().key
    note_box().input("Called ERP team, waiting for callback").run()
    choose(at, "partner_unavailable")
    assert note_box().key != first and note_box().value == "", "another exception, its own box"
    choose(at, "dead_lettered")
    assert (note_box().key, note_box().value) == (first, "Called ERP team, waiting for callback")
    next(b for b in at.button if b.label == "Add note").click().run()
    choose(choose(at, "partner_unavailable"), "dead_lettered")
    assert (note_box().key, note_box().value) == (first, ""), "a note sent is not kept"


def test_an_agent_leaves_a_note_the_next_one_reads_in_the_history(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str
) -> None:
    at = choose(open_app(monkeypatch, sample_copy, "exceptions.py", user="sam"), "dead_lettered")
    next(b for b in at.button if b.label == "Add note").click().run()
    assert at.error and read(at.error[0].value) == "**Note:** Write the note to add. The exception is open."
    note = next(t for t in at.text_input if t.label.startswith("Note"))
    note.input("Called the 3PL (ops@fastship.example, +1 555 010 9999): resend promised tonight").run()
    next(b for b in at.button if b.label == "Add note").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.success and read(at.success[0].value) == "**Note** added; the exception is open."
    assert next(t for t in at.text_input if t.label.startswith("Note")).value == "", "a note is added once"
    (history,) = [df.value for df in at.dataframe if "Note" in df.value.columns]
    latest = history.iloc[0]
    assert (latest["Action"], latest["By"], latest["Result"]) == ("note", "sam", "succeeded")
    assert latest["Note"] == "Called the 3PL (***, ***): resend promised tonight"
    assert [action for _, action, _ in audit_rows(sample_copy)][-2:] == ["note", "note"]
    admin = open_app(monkeypatch, sample_copy, "admin.py")
    assert not admin.exception and "the log is append-only, so nobody can change it" in texts(admin)
    log = next(d.value for d in admin.dataframe if "request_summary" in d.value.columns)
    assert (log["actor"].iloc[0], log["action"].iloc[0]) == ("sam", "note")
    assert "555" not in " ".join(log["request_summary"].dropna()), "the phone number is masked (not the clock's digits)"
    assert (log["result"].iloc[1], log["why"].iloc[1]) == ("failed", "write the note to add"), "the refusal says why"


def test_an_exception_a_colleague_closes_meanwhile_says_who_and_keeps_the_typed_note_in_sight(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str
) -> None:
    from actions.api import perform
    from actions.services import close_all
    from syncwatch.config import load_config

    at = choose(open_app(monkeypatch, sample_copy, "exceptions.py", user="sam"), "dead_lettered")
    next(t for t in at.text_input if t.label.startswith("Note")).input("duplicate of the other one").run()
    opened = (
        at.query_params["exception"][0]
        if isinstance(at.query_params["exception"], list)
        else at.query_params["exception"]
    )
    store = Store.open(sample_copy)
    try:
        done = perform(
            store, load_config(environ={}), action="resolve", exception_id=opened, actor="alex", note="replayed"
        )
    finally:
        close_all()
        store.close()
    assert done.ok, done.message
    next(b for b in at.button if b.label == "Ignore").click().run()
    assert not at.exception, [e.value for e in at.exception]
    said = texts(at)
    assert "This exception is resolved by alex at " in said and "reopen it if that was wrong" in said
    assert (
        at.warning
        and "Your note was not recorded" in at.warning[0].value
        and "duplicate of the other one" in at.warning[0].value
    )
    assert at.error and "**Ignore:** The exception is already resolved by alex at " in read(at.error[0].value)
    audited = audit_rows(sample_copy)[-2:]
    assert [(actor, action) for actor, action, _ in audited] == [("alex", "resolve"), ("sam", "ignore")]
    assert audited[-1][2] == "refused", "the click on the stale page is answered and audited, not dropped"


def test_an_agent_reopens_what_she_ignored_by_mistake(monkeypatch: pytest.MonkeyPatch, sample_copy: str) -> None:
    """Ignore took one click and could not be undone, in the dashboard or the CLI."""
    at = choose(open_app(monkeypatch, sample_copy, "exceptions.py", user="sam"), "dead_lettered")
    next(t for t in at.text_input if t.label.startswith("Note")).input("looks like a duplicate").run()
    next(b for b in at.button if b.label == "Ignore").click().run()
    assert "This exception is ignored by sam at " in texts(at) and "reopen it if that was wrong" in texts(at)
    opened = at.query_params["exception"]
    reader = open_app(monkeypatch, sample_copy, "exceptions.py", user="kim")
    reader.query_params["exception"] = opened[0] if isinstance(opened, list) else opened
    reader.run()
    assert "This exception is ignored by sam at " in texts(reader), "who closed it is for every reader"
    next(b for b in at.button if b.label == "Reopen").click().run()
    assert at.error and read(at.error[0].value) == "**Reopen:** A note is required to reopen. The exception is ignored."
    next(t for t in at.text_input if t.label.startswith("Why reopen")).input("not a duplicate after all").run()
    next(b for b in at.button if b.label == "Reopen").click().run()
    assert at.success and read(at.success[0].value) == "**Reopen:** Note recorded; the exception is open."
    assert {"Replay", "Ignore", "Resolve"} <= {b.label for b in at.button}, "open again: the actions are back"
    assert [action for actor, action, _ in audit_rows(sample_copy) if actor == "sam"][-3:] == [
        "ignore",
        "reopen",
        "reopen",
    ]


def test_assign_to_me_on_an_exception_a_colleague_closed_is_refused_and_says_who(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str
) -> None:
    from actions.api import perform
    from actions.services import close_all
    from syncwatch.config import load_config

    at = choose(open_app(monkeypatch, sample_copy, "exceptions.py", user="sam"), "dead_lettered")
    opened = at.query_params["exception"]
    store = Store.open(sample_copy)
    try:
        exception_id = opened[0] if isinstance(opened, list) else opened
        perform(store, load_config(environ={}), action="ignore", exception_id=exception_id, actor="alex", note="dup")
    finally:
        close_all()
        store.close()
    next(b for b in at.button if b.label == "Assign to me").click().run()
    assert at.error and read(at.error[0].value).startswith("**Assign:** The exception is already ignored by alex at ")
    assert "; nothing to assign" in read(at.error[0].value), "reopen it first"
    assert audit_rows(sample_copy)[-1] == (
        "sam",
        "assign",
        "refused",
    )


def test_a_rejected_order_offers_its_recorded_body_to_edit_before_retrying(
    monkeypatch: pytest.MonkeyPatch, sample_db: str
) -> None:
    """The body sits on the client span beside the failing server span: the editor finds it where Retry does."""
    at = choose(open_app(monkeypatch, sample_db, "exceptions.py"), "validation")
    assert [t.label for t in at.toggle] == ["Edit the payload before retrying"]
    assert "No request body was stored" not in texts(at), "what was sent is shown where Retry finds it"
    assert any('"lines"' in c.value for c in at.code), [c.value[:80] for c in at.code]
    at.toggle[0].set_value(True).run()
    next(a for a in at.text_area if a.label == "Payload to send").input('{"customer": "C-1", lines: [}').run()
    assert at.error[0].value.startswith("The edited payload is not a JSON object (line 1, column 21: Expecting")
    assert next(b for b in at.button if b.label == "Retry").disabled, "never send the original instead of the edit"


def test_a_retry_with_no_recorded_body_lets_the_agent_write_one(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str
) -> None:
    from syncwatch.store.actions import step_observations

    store = Store.open(sample_copy)
    try:
        timeout = q.exception_queue(store, q.QueueFilter(categories=("timeout",))).iloc[0]
        row = q.exception_row(store, timeout["id"])
        with store.writing() as conn:
            ids = [o["id"] for o in step_observations(conn, row["observation_id"], row["transaction_id"])]
            conn.exec_driver_sql(
                "UPDATE observations SET payload = NULL,"
                " attributes = json_remove(attributes, '$.\"http.request.body\"')"
                f" WHERE id IN ({', '.join(map(str, ids))})"
            )
    finally:
        store.close()
    at = choose(open_app(monkeypatch, sample_copy, "exceptions.py"), "timeout")
    write = next(t for t in at.toggle if t.label == "Write the request body to send (none was recorded)")
    write.set_value(True).run()
    assert not at.error, "nothing is wrong before anything is typed"
    body = next(a for a in at.text_area if a.label == "Request body to send (JSON)")
    body.input('{"order": ').run()
    assert at.error[0].value.startswith("This is not a JSON object")
    assert next(b for b in at.button if b.label == "Retry").disabled
    next(a for a in at.text_area if a.label == "Request body to send (JSON)").input('{"order": "113-1"}').run()
    assert not at.error
    next(b for b in at.button if b.label == "Retry").click().run()
    outcome = [*at.success, *at.error][0].value
    assert outcome.startswith("**Retry") and "Retry failed" not in outcome and "was not recorded" not in outcome, (
        outcome
    )


def test_a_system_that_stops_sending_is_called_quiet_on_operations(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str
) -> None:
    at = open_app(monkeypatch, sample_copy)
    assert not [w.value for w in at.warning if "gone quiet" in w.value], "the sample week has no outage"
    with sqlite3.connect(sample_copy.removeprefix("sqlite:///")) as conn:
        conn.execute("DELETE FROM observations WHERE system = 'wms' AND start_time > '2026-11-08 20:30'")
    at = open_app(monkeypatch, sample_copy)
    (quiet,) = [w.value for w in at.warning if "gone quiet" in w.value]
    assert re.fullmatch(
        r"\*\*A system has gone quiet:\*\*\n\n- \*\*wms\*\*: nothing since Sun 08 Nov 20:\d\d UTC \(3 h \d\d m\); "
        r"in the same hours yesterday it sent something in \d+ different minutes\n\n"
        r"Check its exporter, webhook or log file, and whether it is up\.",
        quiet,
    ), quiet


def finished_job(at: AppTest) -> str:
    """The bulk job's closing line, once it has ended (the page reads the job every run; while it
    runs, the same line counts what it has done so far, and a Cancel button shows)."""
    for _ in range(60):
        running = any(b.label == "Cancel the job" for b in at.button)
        if not running and any("failed or refused" in e.value for e in at.error):
            break
        time.sleep(0.5)
        at.run()
    return next(e.value for e in at.error if "failed or refused" in e.value)


def test_a_bulk_job_that_failed_says_so_and_why(monkeypatch: pytest.MonkeyPatch, sample_copy: str) -> None:
    """No simulator answers here, so every retry fails: the job must not read as a success."""
    at = open_app(monkeypatch, sample_copy, "exceptions.py")
    next(m for m in at.multiselect if m.label == "Category").set_value(["validation"]).run()
    next(s for s in at.selectbox if s.label == "Action").select("retry").run()
    next(b for b in at.button if b.label == "Plan").click().run()
    next(b for b in at.button if b.label.startswith("Run retry on ")).click().run()
    outcome = finished_job(at)
    assert re.fullmatch(r"0 succeeded, \d+ failed or refused\.", outcome), outcome
    assert "could not be reached" in texts(at), "the most frequent reason is named"
    assert not any("of 0 done" in p.proto.text for p in at.get("progress"))


def test_a_bulk_job_counts_what_others_fixed_meanwhile_as_already_done(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str
) -> None:
    """Exceptions an agent's retry fixed between the plan and the run read as the job's successes."""
    from actions.ledger import record_done
    from syncwatch.model import utcnow
    from syncwatch.store.schema import exceptions as exceptions_table

    at = open_app(monkeypatch, sample_copy, "exceptions.py")
    next(m for m in at.multiselect if m.label == "Category").set_value(["validation"]).run()
    next(s for s in at.selectbox if s.label == "Action").select("retry").run()
    next(b for b in at.button if b.label == "Plan").click().run()
    fixed = at.session_state["bulk_plan"][1].exception_ids[:2]
    store = Store.open(sample_copy)
    with store.engine.begin() as conn:
        for exception_id in fixed:
            record_done(conn, exception_id, "retry", "sam", {}, {"steps": ["sent"]}, utcnow())
            conn.execute(exceptions_table.update().where(exceptions_table.c.id == exception_id), {"status": "resolved"})
    store.close()
    next(b for b in at.button if b.label.startswith("Run retry on ")).click().run()
    outcome = finished_job(at)
    assert re.fullmatch(r"0 succeeded, \d+ failed or refused, 2 already done \(2 already retried\)\.", outcome), outcome


def test_a_lead_plans_a_bulk_reroute_to_a_partner_for_the_filter_shown(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str
) -> None:
    at = open_app(monkeypatch, sample_copy, "exceptions.py")
    next(m for m in at.multiselect if m.label == "Category").set_value(["partner_unavailable"]).run()
    next(s for s in at.selectbox if s.label == "Action").select("reroute").run()
    target = next(s for s in at.selectbox if s.label == "Reroute to")
    assert list(target.options) == ["3pl-fastship", "3pl-parcelpro", "wms"] and target.value is None, "no default"
    assert next(b for b in at.button if b.label == "Plan").disabled, "where orders go is the lead's choice"
    target.select("wms").run()
    next(b for b in at.button if b.label == "Plan").click().run()
    assert not at.exception, [e.value for e in at.exception]
    plan = next(w.value for w in at.warning if w.value.startswith("**Reroute"))
    assert re.match(r"\*\*Reroute \d+ exceptions to wms\.\*\*", plan), plan
    assert any(b.label.startswith("Run reroute on ") for b in at.button)
    next(s for s in at.selectbox if s.label == "Reroute to").select("3pl-parcelpro").run()
    assert not any(b.label.startswith("Run reroute on ") for b in at.button), "planned for another partner"
    next(b for b in at.button if b.label == "Plan").click().run()
    plan = next(w.value for w in at.warning if w.value.startswith("**Reroute"))
    assert "already with 3pl-parcelpro" in read(plan), plan


def test_bulk_reroute_does_not_offer_the_partners_the_queue_is_filtered_to(
    monkeypatch: pytest.MonkeyPatch, sample_copy: str
) -> None:
    """Filtered to the 3PL that is down, the chooser's first partner was that 3PL, and the plan
    then left every order out: 'already with 3pl-fastship'."""
    at = open_app(monkeypatch, sample_copy, "exceptions.py")
    next(m for m in at.multiselect if m.label == "Failing system").set_value(["3pl-fastship"]).run()
    next(s for s in at.selectbox if s.label == "Action").select("reroute").run()
    assert list(next(s for s in at.selectbox if s.label == "Reroute to").options) == ["3pl-parcelpro", "wms"]


def test_an_agent_reads_that_bulk_actions_are_a_leads(monkeypatch: pytest.MonkeyPatch, sample_db: str) -> None:
    at = open_app(monkeypatch, sample_db, "exceptions.py", user="sam")
    assert not [e for e in at.expander if e.label.startswith("Bulk action")]
    assert any(
        re.fullmatch(r"Bulk actions on all \d+ matching exceptions are a lead's: ask one to run them\.", c.value)
        for c in at.caption
    )


def test_an_action_found_done_already_reads_as_nothing_changed_not_as_success(
    monkeypatch: pytest.MonkeyPatch, sample_db: str
) -> None:
    """A second Replay read, in green, 'Already done by alex …; nothing was sent again. The exception
    is now retrying.', which an agent took for a second replay that worked."""
    at = choose(open_app(monkeypatch, sample_db, "exceptions.py"), "dead_lettered")
    [shown] = [s.value for s in at.selectbox if s.label.startswith("Open an exception")]
    at.session_state["action_outcome"] = {  # what the page keeps of the click's result (OUTCOME)
        "exception": shown,
        "action": "replay",
        "ok": True,
        "status": "open",
        "message": "Already done by alex (act-1); nothing was sent again.",
        "action_id": "act-1",
        "skipped": "already replayed",
    }
    at.run()
    assert not at.success, "nothing happened now: no good news"
    [said] = [i.value for i in at.info if i.value.startswith("**Replay:**")]
    assert "Already done by alex" in read(said) and said.endswith("Nothing changed: the exception is open."), said


def test_a_link_filtering_by_a_stored_category_name_filters_the_queue(
    monkeypatch: pytest.MonkeyPatch, sample_db: str
) -> None:
    """?category=dead_lettered (the name the CLI and the export use) was dropped without a word and
    the queue showed all exceptions; only ?category=dead+lettered, the label, worked."""
    at = open_app(monkeypatch, sample_db, "exceptions.py")
    everything = at.dataframe[0].value
    at.query_params["category"] = "dead_lettered"
    at.query_params["sla"] = "breached"
    at.run()
    assert next(m for m in at.multiselect if m.label == "Category").value == ["dead_lettered"]
    assert next(m for m in at.multiselect if m.label == "SLA state").value == ["breached"]
    shown = at.dataframe[0].value
    assert 0 < len(shown) < len(everything) and set(shown["category"]) == {"dead lettered"}
