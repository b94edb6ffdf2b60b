"""`syncwatch bench ingest`: OTLP spans/s over HTTP into SQLite (protobuf and JSON), log lines/s
from a file, CloudEvents/s, and the bare limit (decode + plain insert) on the same payloads.

The server is a real `syncwatch serve` subprocess; the load generator pre-encodes every request
and keeps a few in flight, as an OpenTelemetry Collector's exporter queue does, so it measures the
collector, not the client. The server's correlator is held back for the run (its interval is set
beyond the bench's length): this measures the collectors, and `bench store` and the correlator's own
figures measure the rest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from syncwatch.bench import Benchmark, Figures
from syncwatch.commands.ingest import import_file
from syncwatch.config import load_config
from syncwatch.store import Store


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spans", type=int, default=100_000, help="spans per encoding (default 100000)")
    parser.add_argument("--batch", type=int, default=1_000, help="spans per request (default 1000)")
    parser.add_argument("--lines", type=int, default=200_000, help="access-log lines (default 200000)")
    parser.add_argument("--events", type=int, default=20_000, help="CloudEvents (default 20000)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")


def _id(label: str, n: int, size: int) -> bytes:
    """A random-looking id, as SDKs make them (sequential ids would only ever append to the indexes)."""
    return hashlib.blake2b(f"{label}{n}".encode(), digest_size=size).digest()


def _span(n: int, now: int) -> Span:
    """The n-th span: ten spans a trace, ids spread like an SDK's."""
    attrs = [
        KeyValue(key="erp.sales_order", value=AnyValue(string_value=f"SO-{n}")),
        KeyValue(key="http.request.method", value=AnyValue(string_value="POST")),
        KeyValue(key="http.response.status_code", value=AnyValue(int_value=201)),
    ]
    return Span(
        trace_id=_id("trace", n // 10, 16),
        span_id=_id("span", n, 8),
        name="POST /sales-orders",
        kind=2,
        start_time_unix_nano=now,
        end_time_unix_nano=now + 20_000_000,
        attributes=attrs,
    )


def _requests(total: int, size: int, offset: int) -> Iterator[ExportTraceServiceRequest]:
    """One request per ``size`` spans, made as they are needed (a million spans stay cheap)."""
    now = time.time_ns() - 3_600 * 10**9
    resource = {"attributes": [KeyValue(key="service.name", value=AnyValue(string_value="erp"))]}
    for s in range(0, total, size):
        spans = [_span(offset + i, now) for i in range(s, min(total, s + size))]
        yield ExportTraceServiceRequest(
            resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
        )


def _json_body(request: ExportTraceServiceRequest) -> bytes:
    """OTLP JSON with hex ids, as an exporter sends it (json_format would write base64)."""
    spans = [
        {
            "traceId": s.trace_id.hex(),
            "spanId": s.span_id.hex(),
            "name": s.name,
            "kind": s.kind,
            "startTimeUnixNano": str(s.start_time_unix_nano),
            "endTimeUnixNano": str(s.end_time_unix_nano),
            "attributes": [
                {"key": "erp.sales_order", "value": {"stringValue": s.attributes[0].value.string_value}},
                {"key": "http.response.status_code", "value": {"intValue": "201"}},
            ],
        }
        for s in request.resource_spans[0].scope_spans[0].spans
    ]
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "erp"}}]}
    return json.dumps({"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]}).encode()


def _post_all(url: str, bodies: list[bytes], content_type: str, concurrency: int) -> float:
    """Seconds to post every body, ``concurrency`` connections each taking the next one."""
    queue = iter(bodies)  # a list iterator hands each body to one thread (its next() holds the GIL)

    def worker() -> None:
        with httpx.Client(timeout=120) as client:
            for body in queue:
                response = client.post(url, content=body, headers={"content-type": content_type})
                response.raise_for_status()

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for done in [pool.submit(worker) for _ in range(concurrency)]:
            done.result()
    return time.perf_counter() - began


def _bare_value(value: AnyValue) -> object:
    which = value.WhichOneof("value")
    return None if which is None else getattr(value, which)


def _bare(bodies: list[bytes], path: Path) -> float:
    """Decode + plain executemany INSERT into an unindexed table: the ceiling for this machine.
    Every attribute value is decoded whatever its type, and commits are as durable as the
    server's (WAL, synchronous=NORMAL), so the ceiling does no less and no more than it must."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE s (trace TEXT, span TEXT, name TEXT, start INTEGER, end INTEGER, attrs TEXT)")
    began = time.perf_counter()
    for body in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        rows = [
            (
                s.trace_id.hex(),
                s.span_id.hex(),
                s.name,
                s.start_time_unix_nano,
                s.end_time_unix_nano,
                json.dumps({kv.key: _bare_value(kv.value) for kv in s.attributes}),
            )
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        ]
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO s VALUES (?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - began
    conn.close()
    return elapsed


def _serve(db: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    """A `syncwatch serve` whose correlator waits the longest interval the config takes (an hour,
    beyond any run of this bench); its log goes to ``log``, quoted if it does not start."""
    command = [sys.executable, "-m", "syncwatch", "serve", "--db", db, "--port", str(port)]
    environ = {**os.environ, "SYNCWATCH_CORRELATE_INTERVAL_S": "3600"}
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=output, env=environ)
    while process.poll() is None:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz").raise_for_status()
            return process
        except httpx.TransportError:
            time.sleep(0.05)
    said = log.read_text(errors="replace").strip().splitlines()
    raise RuntimeError(f"syncwatch serve did not start: {said[-1] if said else f'exit status {process.returncode}'}")


def _children(pid: int) -> list[int]:
    """The server's own processes: its parse workers (and multiprocessing's idle resource
    tracker). A thread that ends while they are listed is passed over."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found.extend(int(child) for child in (task / "children").read_text().split())
        except FileNotFoundError:
            continue
    return found


def _cpu_s(pid: int) -> float:
    """CPU seconds ``pid`` has used so far, user and system (``/proc/PID/stat``'s utime and stime);
    0 for a process already gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_split(pid: int) -> tuple[float, float]:
    """CPU seconds of the server process and of its parse workers together, so far: which of the
    two sets the pace (each runs on one core at most). A worker restarted during the run (after
    one died) would make the difference wrong."""
    return _cpu_s(pid), sum(_cpu_s(child) for child in _children(pid))


def _peak_rss_mb(pid: int) -> float:
    """The server's peak RSS plus each of its processes' (the parse workers): the sum of the peaks
    is never below the peak of the sum, so it cannot flatter the memory figure."""
    pids = [pid, *_children(pid)]
    peak_kb = 0
    for each in pids:
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak_kb += int(line.split()[1])
    return round(peak_kb / 1024, 1)


def _lines_per_s(tmp: Path, count: int) -> float:
    log, first = tmp / "gateway.log", datetime(2026, 11, 25, tzinfo=UTC)
    with log.open("w") as handle:
        for n in range(count):
            request = f"POST /sales-orders/SO-{n}/allocate HTTP/1.1"
            at = (first + timedelta(seconds=n // 10)).strftime("%d/%b/%Y:%H:%M:%S +0000")  # ten lines a second
            handle.write(f'10.0.0.{n % 250} - - [{at}] "{request}" 201 5 "-" "bench" 0.012\n')
    config = load_config(None, {"db": f"sqlite:///{tmp / 'lines.db'}"})
    store = Store.open(config.db)
    store.upgrade()
    from collectors.formats import FileSpec
    from collectors.sink import Sink
    from collectors.workers import ParsePool, default_workers

    # As `syncwatch ingest` imports a large file: chunks parsed ahead in worker processes, whose
    # start (a second, once per import) is left out of the rate.
    sink = Sink(store, config)
    pool = ParsePool(sink, default_workers())
    pool.wait_ready()
    try:
        began = time.perf_counter()
        import_file(FileSpec(str(log), "combined", "bench"), sink, lambda _done: None, pool)
        elapsed = time.perf_counter() - began
    finally:
        pool.close()
        store.close()
    return count / elapsed


def _events(total: int) -> list[bytes]:
    batches = []
    for start in range(0, total, 500):
        events = [
            {
                "specversion": "1.0",
                "id": f"e-{n}",
                "source": "3pl-fastship",
                "type": "com.syncwatch.shipment.shipped",
                "time": "2026-11-25T10:00:00Z",
                "data": {"shipment_id": f"SH-{n}", "sales_order": f"SO-{n}"},
            }
            for n in range(start, min(total, start + 500))
        ]
        batches.append(json.dumps(events).encode())
    return batches


def _run(args: argparse.Namespace) -> Figures:
    import socket

    from collectors.server import JSON, PROTOBUF

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        proto = [r.SerializeToString() for r in _requests(args.spans, args.batch, 0)]
        as_json = [_json_body(r) for r in _requests(args.spans, args.batch, args.spans)]
        events = _events(args.events)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        db = f"sqlite:///{tmp / 'bench.db'}"
        Store.open(db).upgrade()
        # The ceiling is measured before and after the server's runs and the faster taken, so a
        # burst of load elsewhere during one of them cannot lower the limit and flatter the ratio.
        bare_before_s = _bare(proto, tmp / "bare-before.db")
        server = _serve(db, port, tmp / "serve.log")
        try:
            url = f"http://127.0.0.1:{port}/v1"
            cpu_before = _cpu_split(server.pid)
            proto_s = _post_all(f"{url}/traces", proto, PROTOBUF, args.concurrency)
            cpu_after = _cpu_split(server.pid)
            server_cpu_s, workers_cpu_s = cpu_after[0] - cpu_before[0], cpu_after[1] - cpu_before[1]
            json_s = _post_all(f"{url}/traces", as_json, JSON, args.concurrency)
            events_s = _post_all(f"{url}/events", events, "application/cloudevents-batch+json", args.concurrency)
            rss = _peak_rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait()
        bare_s = min(bare_before_s, _bare(proto, tmp / "bare-after.db"))
        lines = _lines_per_s(tmp, args.lines)
    return {
        "spans": args.spans,
        "otlp_protobuf_spans_per_s": round(args.spans / proto_s),
        "otlp_json_spans_per_s": round(args.spans / json_s),
        "bare_limit_spans_per_s": round(args.spans / bare_s),
        "protobuf_to_bare_ratio": round(bare_s / proto_s, 3),
        # CPU of the protobuf run a span: the server process (HTTP and the store writes) and its
        # parse workers; the larger one, against the run's wall time a span, is the pace setter.
        "protobuf_server_cpu_us_per_span": round(server_cpu_s / args.spans * 1e6, 1),
        "protobuf_parse_cpu_us_per_span": round(workers_cpu_s / args.spans * 1e6, 1),
        "log_lines_per_s": round(lines),
        "events_per_s": round(args.events / events_s),
        "server_peak_rss_mb": rss,
    }


BENCHMARK = Benchmark(
    "ingest", "collector throughput end to end, and the bare limit on the same payloads", _add_arguments, _run
)
