"""Parsing in worker processes (what `syncwatch serve` does by default): the same answers,
rejections and quarantine as parsing in the request threads; a dead worker costs no request; and
workers do not outlive the server, not even its ``kill -9``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import select
from test_collect_corpus import CASES, CONFIG, PB, TOKEN, cloud_event, good_span, js_span, js_traces
from test_collect_kill import gone

from collectors.server import create_app
from collectors.sink import Sink
from collectors.workers import ParsePool, default_workers
from syncwatch import cores
from syncwatch.config import load_config
from syncwatch.store import Store
from syncwatch.store.schema import observations, quarantine
from syncwatch.store.writes import COLUMNS

AUTH = {"authorization": f"Bearer {TOKEN}"}


class Collector:
    def __init__(self, url: str, store: Store, pool: ParsePool) -> None:
        self.url, self.store, self.pool = url, store, pool


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    import socket

    tmp = tmp_path_factory.mktemp("workers")
    (tmp / "collector.toml").write_text(CONFIG)
    config = load_config(str(tmp / "collector.toml"), {"db": f"sqlite:///{tmp / 'workers.db'}"}, environ={})
    store = Store.open(config.db, raw_limit=config.quarantine_raw_limit)
    store.upgrade()
    sink = Sink(store, config)
    pool = ParsePool(sink, 1)
    pool.wait_ready()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(sink, {"PARTNER_TOKEN": TOKEN}, pool)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.01)
    yield Collector(f"http://127.0.0.1:{port}", store, pool)
    server.should_exit = True
    thread.join(timeout=10)
    pool.close()
    store.close()


def stored_ids(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(observations.c.natural_id)).scalars())


def reasons(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(quarantine.c.reason)).scalars())


def test_default_workers_leave_a_core_to_the_server_within_the_quota(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On an 8-core host, four workers (the most); in a container whose quota grants two of those
    cores, one worker, leaving the other to the server."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(8)))
    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(cores, "CPU_MAX", quota)
    assert default_workers() == 4, "no quota file: every core but the server's, at most four"
    quota.write_text("max 100000\n")
    assert default_workers() == 4
    quota.write_text("200000 100000\n")
    assert default_workers() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0})
    assert default_workers() == 1, "one core: still one worker"


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_every_bad_input_gets_the_same_answer_and_quarantine_as_in_process(collector: Collector, case) -> None:  # type: ignore[no-untyped-def]
    headers = {**case.headers, **({"content-type": case.content_type} if case.content_type else {})}
    if case.auth:
        headers["authorization"] = case.auth
    response = httpx.post(f"{collector.url}{case.path}", content=case.body, headers=headers, timeout=60)
    assert response.status_code == case.status
    assert case.message in response.content.decode("utf-8", "replace")
    assert any(case.message in reason for reason in reasons(collector.store))


def test_spans_json_and_events_are_stored_once(collector: Collector) -> None:
    before = set(stored_ids(collector.store))
    with httpx.Client(base_url=collector.url, headers=AUTH, timeout=60) as client:
        for _ in range(2):
            assert client.post("/v1/traces", content=good_span(7), headers={"content-type": PB}).status_code == 200
        body = js_traces(js_span(spanId="00000000000000AB"), js_span(spanId="00000000000000AC", startTimeUnixNano="0"))
        response = client.post("/v1/traces", content=body, headers={"content-type": "application/json"})
        assert response.json()["partialSuccess"]["rejectedSpans"] == "1"
        event = cloud_event(id="evt-workers")
        answer = client.post("/v1/events", content=event, headers={"content-type": "application/cloudevents+json"})
        assert answer.json()["stored"] == 1
    new = set(stored_ids(collector.store)) - before
    assert len(new) == 3 and any(nid.endswith("00000000000000ab") for nid in new)


def test_a_killed_worker_costs_no_request_and_is_replaced(collector: Collector) -> None:
    killed = set(collector.pool._pool._processes)  # type: ignore[union-attr]
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    before = len(stored_ids(collector.store))
    with httpx.Client(base_url=collector.url, headers=AUTH, timeout=60) as client:
        for n in (8, 9, 10):
            assert client.post("/v1/traces", content=good_span(n), headers={"content-type": PB}).status_code == 200
    assert len(stored_ids(collector.store)) == before + 3
    assert set(collector.pool._pool._processes).isdisjoint(killed)  # type: ignore[union-attr]


WATCHED = """
import sys
from collectors.sink import Sink
from collectors.workers import ParsePool
from syncwatch.config import load_config
from syncwatch.store import Store

config = load_config(None, {"db": sys.argv[1]})
store = Store.open(config.db)
store.upgrade()
pool = ParsePool(Sink(store, config), 1)
pool.wait_ready()
print(*pool._pool._processes, flush=True)
sys.stdin.read()
"""


def test_workers_exit_when_the_server_is_killed(tmp_path: Path) -> None:
    command = [sys.executable, "-c", WATCHED, f"sqlite:///{tmp_path / 'watched.db'}"]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.DEVNULL}
    with subprocess.Popen(command, cwd=Path(__file__).parents[1], **pipes) as parent:  # type: ignore[call-overload]
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert workers
        parent.kill()
    assert gone(set(workers))


@pytest.fixture
def own_pool(tmp_path: Path) -> Iterator[ParsePool]:
    """A started one-worker pool on an empty store, for tests that stop or break it."""
    config = load_config(None, {"db": f"sqlite:///{tmp_path / 'own.db'}"}, environ={})
    store = Store.open(config.db)
    store.upgrade()
    pool = ParsePool(Sink(store, config), 1)
    pool.wait_ready()
    yield pool
    pool.close()
    store.close()


def test_the_app_closes_its_pool_when_it_shuts_down(own_pool: ParsePool) -> None:
    import asyncio

    workers = set(own_pool._pool._processes)  # type: ignore[union-attr]
    app = create_app(own_pool.sink, {}, own_pool)

    async def start_and_stop() -> None:
        async with app.router.lifespan_context(app):
            assert not gone(workers, timeout_s=0)

    asyncio.run(start_and_stop())
    assert gone(workers, timeout_s=0)


def test_parsing_ahead_keeps_the_order_and_survives_a_dead_worker(own_pool: ParsePool, tmp_path: Path) -> None:
    from collectors.formats import FileSpec

    pool = own_pool
    spec = FileSpec(str(tmp_path / "unused.log"), "combined", "ahead")
    line = '10.0.0.1 - - [25/Nov/2026:10:00:00 +0000] "GET /orders/{n} HTTP/1.1" 200 5 "-" "t" 0.010\n'
    chunks = [line.format(n=n).encode() for n in range(12)]

    def calls():  # type: ignore[no-untyped-def]
        for n, data in enumerate(chunks):
            if n == 5:
                for pid in list(pool._pool._processes):  # type: ignore[union-attr]
                    os.kill(pid, signal.SIGKILL)
                time.sleep(0.2)
            yield spec.parse, (data, n * 1000, "id:0"), "ahead"

    rows = [parsed.rows[0] for parsed in pool.parse_ahead(calls(), ahead=3)]
    attributes = COLUMNS.index("attributes")
    assert [json.loads(row[attributes])["url.path"] for row in rows] == [f"/orders/{n}" for n in range(12)]


def test_a_tailer_catches_up_a_backlog_through_the_pool(own_pool: ParsePool, tmp_path: Path) -> None:
    """A file tailed by `serve` that grew (and rotated) while nobody read it: its chunks are parsed
    in the workers, in order, one commit per group, each line stored once, even when a worker dies."""
    from collectors.formats import FileSpec
    from collectors.tailer import FileTailer

    log = tmp_path / "gateway.log"
    line = '10.0.0.1 - - [25/Nov/2026:10:00:00 +0000] "GET /orders/SO-{n} HTTP/1.1" 200 5 "-" "t" 0.010\n'
    log.write_text(line.format(n=0))
    follow = FileTailer(FileSpec(str(log), "combined", "backlog"), own_pool.sink, chunk=300, pool=own_pool)
    assert follow.poll().stored == 1
    asked = []
    parse_ahead = own_pool.parse_ahead

    def counted(calls, ahead):  # type: ignore[no-untyped-def]
        asked.append(ahead)
        yield from parse_ahead(calls, ahead)

    own_pool.parse_ahead = counted  # type: ignore[method-assign]
    with log.open("a") as handle:
        handle.writelines(line.format(n=n) for n in range(1, 30))
    log.rename(tmp_path / "gateway.log.1")
    log.write_text("".join(line.format(n=n) for n in range(30, 60)))
    for pid in list(own_pool._pool._processes):  # type: ignore[union-attr]
        os.kill(pid, signal.SIGKILL)
    assert follow.poll().stored == 59
    assert asked  # the rotated file's rest and the new file both went through the pool
    with own_pool.sink.store.engine.connect() as conn:
        paths = [
            json.loads(a)["url.path"]
            for (a,) in conn.exec_driver_sql("SELECT attributes FROM observations ORDER BY id")
        ]
        quarantined = conn.exec_driver_sql("SELECT count(*) FROM quarantine").scalar_one()
    assert paths == [f"/orders/SO-{n}" for n in range(60)] and quarantined == 0


def test_the_caller_parses_a_queued_call_while_the_workers_are_busy(own_pool: ParsePool, tmp_path: Path) -> None:
    """The worker holds the first call until the caller has parsed a later one itself: results
    still come in call order, and the caller's share is parsed in the caller's process."""
    from parse_support import flagged

    flag = str(tmp_path / "caller-parsed")
    calls = [(flagged, (n, flag), "steal") for n in range(6)]
    results = [parsed.rows[0] for parsed in own_pool.parse_ahead(iter(calls), ahead=4)]
    assert [index for index, _pid in results] == list(range(6))
    assert os.getpid() in {pid for _index, pid in results}
    assert {pid for _index, pid in results} - {os.getpid()}  # and the rest in the worker
