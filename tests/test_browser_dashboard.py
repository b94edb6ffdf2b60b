"""The demo in real headless Chromium: sign in, look at every page, open an exception, Retry, see it resolved.

Needs Debian's /usr/bin/chromium and the playwright package (never a downloaded browser); without
either the test skips and says which. Screenshots of every page go to test-output/ (git-ignored).
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboard.users import add_user
from syncwatch.sim.ports import free_port_run

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SHOTS = Path(__file__).resolve().parents[1] / "test-output"
PAGES = ("Operations", "Exceptions", "Endpoints", "Transaction search", "KPIs", "Admin")
PASSWORD = "demo-password-1"

pytestmark = pytest.mark.slow


def _playwright() -> Any:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is missing: pip install playwright (no browser download needed)")
    return sync_playwright


class Demo:
    def __init__(self, folder: Path) -> None:
        base = free_port_run(10)  # serve, dashboard, a spare, the simulator's six services and its outage control
        self.port, self.dashboard, self.sim = base, base + 1, base + 3
        self.folder, self.log = folder, folder / "demo.log"
        users = folder / "users.txt"
        add_user(users, "alex", PASSWORD)
        env = {**os.environ, "SYNCWATCH_DASHBOARD_USERS": str(users)}
        for name in ("SYNCWATCH_CONFIG", "SYNCWATCH_DB", "SYNCWATCH_DASHBOARD_DEMO_USER", "SYNCWATCH_DASHBOARD_URL"):
            env.pop(name, None)
        argv = [sys.executable, "-m", "syncwatch", "demo", "--dir", str(folder / "demo"), "--port", str(self.port)]
        argv += ["--dashboard-port", str(self.dashboard), "--sim-base-port", str(self.sim)]
        with self.log.open("w") as out:
            self.process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.dashboard}"

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while "dashboard at" not in self.log.read_text():
            assert self.process.poll() is None, f"the demo stopped:\n{self.log.read_text()}"
            assert time.monotonic() < deadline, f"the demo did not start in {timeout} s:\n{self.log.read_text()}"
            time.sleep(0.5)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def unknown_sku_exception(self) -> tuple[str, str]:
        """An order the ERP rejected for an unknown SKU (transient failures the demo's automatic
        retries fix on their own; this one waits for a person)."""
        with sqlite3.connect(self.folder / "demo" / "demo.db") as conn:
            row = conn.execute(
                "SELECT id, summary FROM exceptions WHERE status = 'open' AND category = 'validation' "
                "AND summary LIKE '%is not in the item master%' ORDER BY opened_at DESC"
            ).fetchone()
        assert row, "the demo's history holds no order rejected for an unknown SKU"
        match = re.search(r"SKU (\S+) is not in the item master", row[1])
        assert match, row[1]
        return str(row[0]), match[1]

    def add_sku_to_erp(self, sku: str) -> None:
        """What the agent does outside syncwatch first: fix the master data in the (simulated) ERP."""
        erp = f"http://127.0.0.1:{self.sim + 2}"  # the ERP is the third system of the simulator
        httpx.post(f"{erp}/master-data/skus", json={"sku": sku}, timeout=10).raise_for_status()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    _playwright()
    demo = Demo(tmp_path_factory.mktemp("browser"))
    try:
        demo.wait_ready()
        yield demo
    finally:
        demo.stop()
    assert demo.process.returncode == 0, demo.log.read_text()[-3000:]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the module: Playwright's sync API cannot be started twice in one thread."""
    with _playwright()() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(demo: Demo, browser: Any) -> Iterator[Any]:
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    yield page
    page.close()


def settle(page: Any) -> None:
    """Wait until Streamlit has finished running the script for what is on screen."""
    page.wait_for_timeout(500)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=60_000)
    page.wait_for_timeout(800)


def sign_in(page: Any, url: str) -> None:
    page.goto(url)
    page.get_by_role("textbox", name="User name").fill("alex")
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Signed in as").wait_for(timeout=60_000)
    settle(page)


def test_the_demo_starts_without_tracebacks_or_retry_warnings(demo: Demo) -> None:
    """What the person who just typed `syncwatch demo` reads before opening the dashboard."""
    log = demo.log.read_text()
    for noise in ("Traceback", "Transient error", "Connection refused"):
        assert noise not in log, log


def test_alert_links_lead_to_the_demos_own_dashboard(demo: Demo) -> None:
    """The demo runs its dashboard on a port of its own here, so links in alerts must name that port."""
    deadline = time.monotonic() + 120
    links: list[str] = []
    while not links and time.monotonic() < deadline:
        with sqlite3.connect(demo.folder / "demo" / "demo.db") as conn:
            links = [link for (link,) in conn.execute("SELECT link FROM alerts WHERE link IS NOT NULL")]
        time.sleep(1)
    assert links, "the sample week ending today has late orders, so serve raises alerts"
    assert all(link.startswith(f"http://127.0.0.1:{demo.dashboard}/") for link in links), links[:3]


def test_the_demo_tails_the_live_gateway_logs(demo: Demo) -> None:
    """All three kinds of input run live in the demo: the gateway's access logs are tailed by serve."""
    deadline = time.monotonic() + 120
    tailed = 0
    while not tailed and time.monotonic() < deadline:
        with sqlite3.connect(demo.folder / "demo" / "demo.db") as conn:
            sql = "SELECT count(*) FROM observations WHERE kind = 'log' AND source LIKE '%live-logs%'"
            tailed = conn.execute(sql).fetchone()[0]
        time.sleep(1)
    assert tailed, "live orders pass the gateway, whose log lines serve tails"


def test_sign_in_then_every_page_renders(demo: Demo, page: Any) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.goto(demo.url)
    page.get_by_role("button", name="Sign in").wait_for(timeout=60_000)
    page.screenshot(path=str(SHOTS / "0-sign-in.png"), full_page=True)
    sign_in(page, demo.url)
    for number, title in enumerate(PAGES, start=1):
        page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
        page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
        settle(page)
        assert not page.get_by_test_id("stException").count(), f"{title} shows a traceback"
        page.screenshot(path=str(SHOTS / f"{number}-{title.lower().replace(' ', '-')}.png"), full_page=True)


def test_a_forwarded_for_header_does_not_choose_the_address_a_sign_in_is_counted_under(
    demo: Demo, browser: Any
) -> None:
    """Streamlit's server took X-Forwarded-For from anyone on this machine: a guesser named a new
    address for each five guesses, or locked others out under theirs, and the audit log kept the
    header's text as where the sign-in came from."""
    context = browser.new_context(extra_http_headers={"X-Forwarded-For": "203.0.113.9"})
    try:
        guess = context.new_page()
        guess.goto(demo.url)
        guess.get_by_role("textbox", name="User name").fill("nobody-here")
        guess.get_by_role("textbox", name="Password").fill("a-guess-1")
        guess.get_by_role("button", name="Sign in").click()
        guess.get_by_text("That user name and password do not match.").wait_for(timeout=60_000)
    finally:
        context.close()
    with sqlite3.connect(demo.folder / "demo" / "demo.db") as conn:
        sql = "SELECT json_extract(detail, '$.client') FROM audit_log WHERE actor = 'nobody-here'"
        assert [client for (client,) in conn.execute(sql)] == ["local"], "the TCP peer, not the header"


def test_open_an_exception_retry_and_see_it_resolved(demo: Demo, page: Any) -> None:
    """The rejected order's request was recorded; once the SKU exists in the live simulated ERP,
    Retry sends it again, the correlator sees the ERP accept it, and the page shows it resolved."""
    exception_id, sku = demo.unknown_sku_exception()
    demo.add_sku_to_erp(sku)
    sign_in(page, f"{demo.url}/exceptions?exception={exception_id}")
    runbook = page.get_by_text("Runbook (")
    runbook.wait_for(timeout=60_000)
    settle(page)
    runbook.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "7-exception-detail.png"))
    page.get_by_role("button", name="Retry", exact=True).click()
    outcome = page.get_by_test_id("stAlert").filter(has_text="Retry:").first
    try:
        outcome.wait_for(timeout=90_000)
        settle(page)
    finally:
        outcome.scroll_into_view_if_needed(timeout=1_000) if outcome.count() else None
        page.screenshot(path=str(SHOTS / "8-after-retry.png"))
    text = outcome.inner_text()
    assert text.startswith("Retry:") and re.search(r"the exception is (now )?resolved", text), text


def test_a_failing_system_callout_opens_its_exceptions(demo: Demo, page: Any) -> None:
    """The lead sees 'erp needs attention' on Operations and one click lists its exceptions."""
    sign_in(page, demo.url)
    callout = page.get_by_test_id("stAlert").filter(has_text="needs attention").first
    callout.wait_for(timeout=60_000)
    system = callout.locator("strong").first.inner_text()
    page.get_by_role("link", name=f"Open {system}'s exceptions").click()
    page.get_by_role("heading", name="Exceptions").first.wait_for(timeout=60_000)
    settle(page)
    assert page.url.endswith(f"/exceptions?system={system}"), page.url
    assert page.get_by_text("Signed in as").count(), "the same session: nobody has to sign in again"
    chosen = page.get_by_test_id("stMultiSelect").filter(has_text="Failing system")
    assert system in chosen.inner_text()
    page.screenshot(path=str(SHOTS / "9-failing-system.png"))


def test_the_queues_filters_live_in_its_address(demo: Demo, page: Any) -> None:
    """A lead sends a filtered queue as a link (or reloads it): it opens filtered the same way."""
    sign_in(page, f"{demo.url}/exceptions?category=validation&status=open")
    page.get_by_role("heading", name="Exceptions").first.wait_for(timeout=60_000)
    settle(page)
    category = page.get_by_test_id("stMultiSelect").filter(has_text="Category")
    status = page.get_by_test_id("stMultiSelect").filter(has_text="Status")
    assert "validation" in category.inner_text() and "retrying" not in status.inner_text()
    assert "category=validation" in page.url and "status=open" in page.url, page.url


def test_selecting_a_late_order_opens_it_in_the_same_session(demo: Demo, page: Any) -> None:
    sign_in(page, demo.url)
    late = page.get_by_test_id("stDataFrame").first
    late.wait_for(timeout=60_000)
    late.scroll_into_view_if_needed()
    box = late.bounding_box()
    page.mouse.click(box["x"] + 12, box["y"] + 35 + 17)  # the first row's selection box, under the header
    page.get_by_role("heading", name="Transaction search").wait_for(timeout=60_000)
    settle(page)
    assert "/search?key=" in page.url, page.url
    assert page.get_by_text("Signed in as").count()
    assert page.get_by_role("heading", name=re.compile(r"^(order|return|inventory_sync):")).count()
    page.screenshot(path=str(SHOTS / "10-transaction.png"), full_page=True)
    page.get_by_test_id("stSidebarNav").get_by_text("Operations", exact=True).click()
    page.get_by_role("heading", name="Operations").first.wait_for(timeout=60_000)
    settle(page)
    page.wait_for_timeout(2_000)
    assert "/search" not in page.url, "back on Operations, the old selection must not open the order again"


def test_selecting_a_row_of_the_queue_opens_that_exception(demo: Demo, page: Any) -> None:
    sign_in(page, f"{demo.url}/exceptions")
    queue = page.get_by_test_id("stDataFrame").first
    queue.wait_for(timeout=60_000)
    queue.scroll_into_view_if_needed()
    box = queue.bounding_box()
    page.mouse.click(box["x"] + 12, box["y"] + 35 + 17)  # the first row's selection box, under the header
    page.get_by_text("Runbook (").wait_for(timeout=60_000)
    settle(page)
    assert "/exceptions?exception=exc-" in page.url, page.url
    page.screenshot(path=str(SHOTS / "11-queue-row-opened.png"), full_page=True)
    # The row stays ticked and is sent with the next click: the button must still do its work.
    page.get_by_role("textbox", name=re.compile("^Note")).fill("Called the partner; resend promised")
    page.get_by_role("button", name="Add note").click()
    page.get_by_test_id("stAlert").filter(has_text="Note added").first.wait_for(timeout=60_000)
    settle(page)
    box = page.get_by_role("textbox", name=re.compile("^Note"))
    assert box.input_value() == "", "the note went with its action: the next action must not record it again"
    page.get_by_role("link", name="Open the transaction: every system's view of it").click()
    page.get_by_role("heading", name=re.compile(r"^(order|return|inventory_sync):")).wait_for(timeout=60_000)
    assert "/search?key=" in page.url, page.url


def test_a_ticked_row_keeps_its_exception_when_the_rows_above_it_change(demo: Demo, page: Any) -> None:
    """Another agent resolves the exception above the one open here: the tick is a row number, and the
    next click must still act on the open exception, not on whatever moved under the tick."""
    from actions.api import perform
    from actions.services import close_all
    from syncwatch.config import load_config
    from syncwatch.store import Store
    from syncwatch.store import queries as q

    db, config = re.search(r"SYNCWATCH_DB=(\S+) SYNCWATCH_CONFIG=(\S+)", demo.log.read_text()).groups()  # type: ignore[union-attr]
    sign_in(page, f"{demo.url}/exceptions")
    queue = page.get_by_test_id("stDataFrame").first
    queue.wait_for(timeout=60_000)
    queue.scroll_into_view_if_needed()
    box = queue.bounding_box()
    page.mouse.click(box["x"] + 12, box["y"] + 35 + 35 + 17)  # the second row's selection box
    page.get_by_text("Runbook (").wait_for(timeout=60_000)
    settle(page)
    opened = re.search(r"exception=(exc-[0-9a-f]+)", page.url)[1]  # type: ignore[index]
    store = Store.open(db)
    try:
        above = next(i for i in q.exception_queue(store, q.QueueFilter())["id"] if i != opened)
        done = perform(store, load_config(config), action="resolve", exception_id=above, actor="sam", note="by phone")
        assert done.ok, done.message
        page.get_by_role("textbox", name=re.compile("^Note")).fill("rows moved under me")
        page.get_by_role("button", name="Add note").click()
        page.get_by_test_id("stAlert").filter(has_text="Note added").first.wait_for(timeout=60_000)
        settle(page)
        assert f"exception={opened}" in page.url, page.url
        with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
            target = conn.execute("SELECT target FROM audit_log WHERE action = 'note' ORDER BY id DESC").fetchone()[0]
        assert target == opened, "the note went to the exception that was open"
    finally:
        close_all()
        store.close()


def test_every_page_has_an_address_that_opens_it_bookmarked(demo: Demo, page: Any) -> None:
    """The lead's first page included: it used to live at / only, so /operations was 'Page not found'."""
    sign_in(page, f"{demo.url}/operations")
    page.get_by_role("heading", name="Operations").first.wait_for(timeout=60_000)
    settle(page)
    assert not page.get_by_text("Page not found").count()
    assert page.url.endswith("/operations"), page.url
    sign_in(page, demo.url)  # a page loaded afresh is a new session: sign in again
    page.get_by_role("heading", name="Operations").first.wait_for(timeout=60_000)
    assert page.url.endswith("/operations"), "the front page sends a lead on to Operations"


def test_the_demo_switcher_keeps_its_person_on_a_page_opened_from_a_row(demo: Demo, page: Any) -> None:
    """Opening an exception from a table row (a page switch) dropped the switcher's choice: kim, an
    executive, read the page as the lead, with Admin in the menu and the lead's buttons."""
    with _dashboard(f"sqlite:///{demo.folder / 'demo' / 'demo.db'}") as url:
        exception_id, _ = demo.unknown_sku_exception()
        with sqlite3.connect(demo.folder / "demo" / "demo.db") as conn:
            (order,) = conn.execute("SELECT transaction_id FROM exceptions WHERE id = ?", (exception_id,)).fetchone()
        page.goto(f"{url}/search?key={order}")
        page.get_by_text("Demo: see the screens as").wait_for(timeout=60_000)
        settle(page)
        page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").click()
        page.get_by_role("option", name=re.compile("^kim")).click()
        settle(page)
        heading = page.get_by_role("heading", name=re.compile(r"^Exceptions \(\d+\)"))
        exceptions = heading.locator("xpath=following::*[@data-testid='stDataFrame'][1]")  # the order's exceptions
        exceptions.scroll_into_view_if_needed()
        box = exceptions.bounding_box()
        page.mouse.click(box["x"] + 15, box["y"] + 35 + 17)
        page.wait_for_url(re.compile("/exceptions"), timeout=60_000)
        settle(page)
        assert page.get_by_text("Signed in as kim (executive)").count()
        assert page.get_by_text("can read this exception").count()
        assert not page.get_by_role("button", name="Resolve", exact=True).count()


def test_a_queue_row_opens_its_exception_again_after_the_chooser_opened_another(
    sample_db: str, tmp_path: Path, browser: Any
) -> None:
    """Tick a row, pick another exception in the chooser, click the row again: the row stayed ticked,
    so the click unticked it and the chooser's exception stayed open. On the sample week, not the demo."""
    copy = tmp_path / "sample.db"
    with sqlite3.connect(sample_db.removeprefix("sqlite:///")) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    with _dashboard(f"sqlite:///{copy}") as url:
        page.goto(f"{url}/exceptions")
        page.get_by_test_id("stDataFrame").first.wait_for(timeout=60_000)
        settle(page)
        _tick_row(page, 0)
        ticked = _opened(page)
        for _ in range(2):
            _pick(page, 3)
            picked = _opened(page, other_than=ticked)
            assert picked and _shows(page, copy, picked), "the chooser opens the exception picked"
            _tick_row(page, 0)
            assert _opened(page, other_than=picked) == ticked, "a click on the row opens its exception again"
            assert _shows(page, copy, ticked)
    page.close()


def _shows(page: Any, db: Path, exception_id: str | None) -> bool:
    """Whether the detail below the queue is that of ``exception_id`` (its heading is the summary)."""
    with sqlite3.connect(db) as conn:
        (summary,) = conn.execute("SELECT summary FROM exceptions WHERE id = ?", (exception_id,)).fetchone()
    return page.get_by_role("heading", name=summary, exact=True).count() == 1


@contextmanager
def _dashboard(db: str) -> Iterator[str]:
    """`syncwatch dashboard` on ``db`` as the demo starts it (the lead signed in): its address."""
    port = free_port_run(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCWATCH_")}
    env |= {"SYNCWATCH_DB": db, "SYNCWATCH_DASHBOARD_DEMO_USER": "alex"}
    argv = [sys.executable, "-m", "syncwatch", "dashboard", "--port", str(port)]
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not _answers(f"{url}/_stcore/health"):
            assert server.poll() is None and time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def _tick_row(page: Any, row: int) -> None:
    """Click a row's selection box in the Exceptions queue. Centred first: scrolled only into view, the
    table's top rows can sit under Streamlit's fixed header, which then takes the click."""
    queue = page.get_by_test_id("stDataFrame").first
    queue.evaluate("table => table.scrollIntoView({block: 'center'})")
    box = queue.bounding_box()
    page.mouse.click(box["x"] + 12, box["y"] + 35 + 35 * row + 17)


def _pick(page: Any, option: int) -> None:
    """Pick the chooser's ``option``-th exception. Its list can fail to open on a click that lands
    while the page is redrawn, so the click is repeated until it is open."""
    chooser = page.get_by_role("combobox", name=re.compile("^Open an exception"))
    for _ in range(3):
        chooser.click()
        if chooser.get_attribute("aria-expanded") == "true":
            break
        page.wait_for_timeout(1_000)
    page.get_by_role("option").nth(option).click()


def _opened(page: Any, other_than: str | None = None) -> str | None:
    """The exception the page's address names once it names one other than ``other_than`` (None if it
    does not within 20 s), after the page has drawn it."""
    script = "other => { const id = new URLSearchParams(location.search).get('exception'); return id && id !== other }"
    try:
        page.wait_for_function(script, arg=other_than, timeout=20_000)
    except Exception:  # playwright's TimeoutError; the package is imported only where it is installed
        return None
    settle(page)
    return re.search(r"exception=([^&]+)", page.url)[1]  # type: ignore[index]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False
