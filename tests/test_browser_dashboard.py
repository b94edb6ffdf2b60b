"""The demo in real headless Chromium: sign in, look at every page, open an exception, Retry, see it resolved.

Needs Debian's /usr/bin/chromium and the playwright package (never a downloaded browser); without
either the test skips and says which. Screenshots of every page go to test-output/ (git-ignored).
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dashboard.users import add_user

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
RETRYABLE = ("partner_unavailable", "timeout")
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


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count < 65535 and all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no run of free ports")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Demo:
    def __init__(self, folder: Path) -> None:
        base = free_ports(9)
        self.port, self.dashboard, self.sim = base, base + 1, base + 3
        self.folder, self.log = folder, folder / "demo.log"
        users = folder / "users.txt"
        add_user(users, "alex", PASSWORD)
        env = {**os.environ, "SYNCWATCH_DASHBOARD_USERS": str(users)}
        for name in ("SYNCWATCH_CONFIG", "SYNCWATCH_DB", "SYNCWATCH_DASHBOARD_DEMO_USER"):
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

    def retryable_exception(self) -> str:
        with sqlite3.connect(self.folder / "demo" / "demo.db") as conn:
            row = conn.execute(
                "SELECT id FROM exceptions WHERE status = 'open' AND category IN (?, ?) ORDER BY opened_at",
                RETRYABLE,
            ).fetchone()
        assert row, "the demo's history holds no open partner or timeout exception"
        return str(row[0])


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
def page(demo: Demo) -> Iterator[Any]:
    with _playwright()() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        yield page
        browser.close()


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


def test_open_an_exception_retry_and_see_the_outcome_in_place(demo: Demo, page: Any) -> None:
    """The generated history stores no request bodies, so the action layer answers that it needs one;
    reaching 'resolved' from the browser needs an exception whose request was recorded (see the report)."""
    exception_id = demo.retryable_exception()
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
    assert text.startswith("Retry:") and "the exception is now" in text, text
