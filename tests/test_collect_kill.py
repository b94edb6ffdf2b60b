"""`kill -9` of `syncwatch serve` while it tails a file and receives OTLP, then a restart: every
line and span is stored exactly once, because each batch commits with its checkpoint."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from sqlalchemy import func, select

from syncwatch.store import Store
from syncwatch.store.schema import observations

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(db: str, config: Path, port: int, stderr: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "syncwatch", "serve", "--db", db, "--config", str(config), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    while process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("syncwatch serve exited at start")


def batch(n: int) -> bytes:
    now = time.time_ns()
    spans = [
        Span(
            trace_id=(n + 1).to_bytes(16, "big"),
            span_id=(i + 1).to_bytes(8, "big"),
            name="POST /sales-orders",
            start_time_unix_nano=now,
            end_time_unix_nano=now + 1000,
        )
        for i in range(50)
    ]
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])]
    ).SerializeToString()


def send_until_stored(url: str, body: bytes) -> bool:
    """One OTLP exporter attempt: True once the collector answered 200."""
    try:
        response = httpx.post(f"{url}/v1/traces", content=body, headers={"content-type": "application/x-protobuf"})
    except httpx.TransportError:
        return False
    return response.status_code == 200


def children(pid: int) -> set[int]:
    """The processes ``pid`` started (its parse workers, their resource tracker)."""
    tasks = Path(f"/proc/{pid}/task")
    return {int(child) for task in tasks.iterdir() for child in (task / "children").read_text().split()}


def gone(pids: set[int], timeout_s: float = 10) -> bool:
    """Whether every one of ``pids`` has exited (a zombie awaiting its reaper counts as exited)."""

    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + timeout_s
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not any(running(pid) for pid in pids)


def counts(db: str) -> tuple[int, int]:
    store = Store.open(db)
    try:
        with store.engine.connect() as conn:
            kinds = dict(conn.execute(select(observations.c.kind, func.count()).group_by(observations.c.kind)).all())
            total_ids = conn.execute(select(func.count(func.distinct(observations.c.natural_id)))).scalar_one()
        assert total_ids == sum(kinds.values())
        return kinds.get("log", 0), kinds.get("span", 0)
    finally:
        store.close()


def test_kill_9_then_restart_stores_every_line_and_span_once(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    log.write_text("")
    config = tmp_path / "serve.toml"
    config.write_text(f'[settings]\ntail_interval_s = 0.05\n\n[[tailers]]\npath = "{log}"\nformat = "combined"\n')
    db = f"sqlite:///{tmp_path / 'kill.db'}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start(db, config, port)
    lines = 0
    pending = [batch(n) for n in range(40)]
    for round_ in range(2):
        for n in range(3000):
            request = f"POST /sales-orders/SO-{round_}-{n}/allocate HTTP/1.1"
            with log.open("a") as handle:
                handle.write(f'10.0.0.1 - - [25/Nov/2026:10:00:00 +0000] "{request}" 201 5 "-" "t" 0.010\n')
            lines += 1
            if n % 150 == 0 and pending and send_until_stored(url, pending[0]):
                pending.pop(0)
        if round_ == 0:
            workers = children(process.pid)
            assert workers, "serve parses in worker processes by default"
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            process = start(db, config, port)
            assert gone(workers), "the killed server's parse workers outlived it"
    while pending:
        if send_until_stored(url, pending[0]):
            pending.pop(0)
    deadline = time.monotonic() + 60
    while counts(db)[0] < lines and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)
    assert counts(db) == (lines, 40 * 50)


def test_sigterm_lets_the_scheduled_jobs_finish_and_stops_the_parse_workers(tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text("[settings]\ncorrelate_interval_s = 0.2\n")
    process = start(f"sqlite:///{tmp_path / 'term.db'}", config, free_port(), stderr=subprocess.PIPE)
    workers = children(process.pid)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert "scheduled jobs stopped" in err.decode(), err.decode()[-2000:]
    assert workers and gone(workers)
    plan = "; correlating every 0.2 s; retention 90 days; alert webhook $SYNCWATCH_ALERT_WEBHOOK not set"
    assert "serve: database sqlite:///" in err.decode() and plan in err.decode(), "what serve does, said at start"
    assert "partners: all 6 on this machine, as the simulator's are" in err.decode(), "where retries go, unconfigured"


def test_a_second_serve_on_the_same_sqlite_file_is_refused_and_the_first_keeps_serving(tmp_path: Path) -> None:
    """Two writers on one SQLite file wait on each other's locks; the README says one serve a file."""
    config = tmp_path / "serve.toml"
    config.write_text("")
    db = f"sqlite:///{tmp_path / 'one.db'}"
    port = free_port()
    first = start(db, config, port)
    try:
        command = [sys.executable, "-m", "syncwatch", "serve", "--db", db, "--config", str(config)]
        second = subprocess.run([*command, "--port", str(free_port())], capture_output=True, text=True, timeout=60)
        assert second.returncode == 1, second.stderr
        assert f"another syncwatch serve (pid {first.pid}) is using {tmp_path / 'one.db'}" in second.stderr
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=30)
    again = start(db, config, port)  # fails if serve exits at start: the lock must have gone with the first
    again.send_signal(signal.SIGINT)
    again.wait(timeout=30)
