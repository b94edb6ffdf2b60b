"""Files: the tailer through rotation, truncation and restarts, and `syncwatch ingest` of the
public fixtures; every line stored exactly once."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from collectors import tailer as tailer_module
from collectors.access_log import json_time_ns
from collectors.formats import FileSpec, safe_end
from collectors.sink import Sink
from collectors.tailer import FileTailer
from syncwatch.cli import main
from syncwatch.config import load_config
from syncwatch.store import Store
from syncwatch.store.schema import observations, quarantine

FIXTURES = Path(__file__).parent / "fixtures"


def line(n: int) -> str:
    request = f"POST /sales-orders/SO-{n}/allocate HTTP/1.1"
    return f'10.0.0.1 - - [25/Nov/2026:10:00:{n % 60:02d} +0000] "{request}" 201 5 "-" "t" 0.010\n'


def count(store: Store, table=observations) -> int:  # type: ignore[no-untyped-def]
    with store.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def keys_of(row) -> list:  # type: ignore[no-untyped-def,type-arg]
    """The stored keys column (named ``keys``, ``extracted_keys`` after the store's rename)."""
    mapping = row._mapping
    return mapping["extracted_keys"] if "extracted_keys" in mapping else mapping["keys"]


def write(path: Path, *numbers: int, mode: str = "a") -> None:
    with open(path, mode) as handle:
        handle.writelines(line(n) for n in numbers)


def tailer(sink: Sink, path: Path) -> FileTailer:
    return FileTailer(FileSpec(str(path), "combined", "gateway-log"), sink)


def test_lines_are_stored_with_keys_and_routes(sink: Sink, tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    write(log, 1, 2)
    assert tailer(sink, log).poll().stored == 2
    with sink.store.engine.connect() as conn:
        row = conn.execute(select(observations).limit(1)).one()
    assert row.operation == "POST /sales-orders/{erp_order}/allocate"
    assert ["erp_order", "SO-1", True] in keys_of(row)


def test_a_partial_last_line_waits_until_it_is_complete(sink: Sink, tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    write(log, 1)
    with log.open("a") as handle:
        handle.write(line(2)[:30])
    follow = tailer(sink, log)
    assert follow.poll().stored == 1
    with log.open("a") as handle:
        handle.write(line(2)[30:])
    assert follow.poll().stored == 1
    assert count(sink.store) == 2 and count(sink.store, quarantine) == 0


def test_metrics_say_how_far_behind_each_tailed_file_is(sink: Sink, tmp_path: Path) -> None:
    """Nothing showed a tailer catching up after downtime; the gauge gives the bytes not read yet."""
    from syncwatch.metrics import ServiceMetrics

    sink.metrics = ServiceMetrics(sink.store)
    log = tmp_path / "gateway.log"
    write(log, 1, 2)
    with log.open("a") as handle:
        handle.write(line(3)[:30])  # still being written
    tailer(sink, log).poll()
    behind = sink.metrics.registry.get_sample_value("syncwatch_tail_bytes_behind", {"source": "gateway-log"})
    assert behind == 30


def test_identical_lines_at_different_offsets_are_distinct(sink: Sink, tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    write(log, 7, 7, 7)
    assert tailer(sink, log).poll().stored == 3


def test_rotation_reads_the_rest_of_the_old_file_then_the_new_one(sink: Sink, tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    write(log, *range(5))
    follow = tailer(sink, log)
    follow.poll()
    write(log, 5, 6)
    log.rename(tmp_path / "gateway.log.1")
    write(log, *range(7, 10), mode="w")
    follow.poll()
    assert count(sink.store) == 10


def test_rotation_with_more_unread_than_one_read_splits_no_line(sink: Sink, tmp_path: Path) -> None:
    """The rotated file's rest is read in chunks too: each ends at a line, not mid-line."""
    log = tmp_path / "gateway.log"
    write(log, 0)
    follow = FileTailer(FileSpec(str(log), "combined", "gateway-log"), sink, chunk=200)  # two lines a read
    follow.poll()
    write(log, *range(1, 12))
    log.rename(tmp_path / "gateway.log.1")
    write(log, 12, mode="w")
    follow.poll()
    assert count(sink.store) == 13 and count(sink.store, quarantine) == 0


def test_rotation_while_stopped_is_caught_up_from_the_checkpoint(sink: Sink, tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    write(log, *range(5))
    tailer(sink, log).poll()
    write(log, 5, 6)
    log.rename(tmp_path / "gateway.log.1")
    write(log, *range(7, 10), mode="w")
    tailer(sink, log).poll()
    assert count(sink.store) == 10


def test_lines_written_to_the_rotated_file_after_the_rename_are_read_until_it_is_quiet(
    sink: Sink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """logrotate's `create` with a delayed reopen: the writer goes on writing the renamed file for
    a while. Those lines were lost; the checkpoint still belongs to the new file."""
    log, rotated = tmp_path / "gateway.log", tmp_path / "gateway.log.1"
    write(log, *range(3))
    follow = tailer(sink, log)
    follow.poll()
    log.rename(rotated)
    write(log, 100, mode="w")
    follow.poll()
    write(rotated, 3, 4)  # the writer still holds the old file open
    write(log, 101)
    follow.poll()
    with rotated.open("a") as handle:
        handle.write(line(5).rstrip("\n"))  # its last words, without a newline
    monkeypatch.setattr(tailer_module, "ROTATED_QUIET_S", 0.0)
    follow.poll()  # it grew: read what is whole
    follow.poll()  # quiet since: read to its end, and let go
    assert count(sink.store) == 8 and count(sink.store, quarantine) == 0
    write(log, 102)
    restarted = tailer(sink, log)
    assert restarted.poll().stored == 1 and count(sink.store) == 9, "the checkpoint is the new file's"


def test_a_rotated_file_gone_before_it_was_read_is_said_with_where_reading_stopped(
    sink: Sink, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "gateway.log"
    write(log, *range(3))
    tailer(sink, log).poll()
    write(log, 3)
    (tmp_path / "archive").mkdir()
    log.rename(tmp_path / "archive" / "gateway.log.1")  # moved away (or compressed) while serve was stopped
    write(log, 7, mode="w")
    with caplog.at_level("WARNING", logger="collectors.tailer"):
        assert tailer(sink, log).poll().stored == 1
    size = f"{len(line(0)) * 3:,}"
    assert f"the file read before (to byte {size}) is not beside it under a rotated name" in caplog.text


def test_copytruncate_is_read_from_the_start_even_with_the_same_first_line(sink: Sink, tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    write(log, *range(5))
    follow = tailer(sink, log)
    follow.poll()
    os.truncate(log, 0)
    write(log, 0, 1, 2)
    follow.poll()
    assert count(sink.store) == 8


def test_a_rewrite_with_the_same_first_line_that_outgrows_the_checkpoint_loses_no_line(
    sink: Sink, tmp_path: Path
) -> None:
    log = tmp_path / "gateway.log"
    write(log, 0, 1)
    follow = tailer(sink, log)
    follow.poll()
    write(log, 0, 12345678, 2, mode="w")  # rewritten in place between two polls, longer than before
    follow.poll()
    with sink.store.engine.connect() as conn:
        paths = sorted(conn.execute(select(observations.c.attributes)).scalars(), key=lambda a: a["url.path"])
        assert count(sink.store, quarantine) == 0
    assert [a["url.path"] for a in paths] == [f"/sales-orders/SO-{n}/allocate" for n in (0, 0, 1, 12345678, 2)]
    again = tailer(sink, log)  # a restart finds the remembered tail and reads nothing twice
    write(log, 3)
    again.poll()
    assert count(sink.store) == 6


def test_a_restart_neither_loses_nor_re_reads_lines(sink: Sink, tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    write(log, *range(5))
    tailer(sink, log).poll()
    write(log, 5, 6)
    result = tailer(sink, log).poll()
    assert (result.stored, result.duplicates) == (2, 0)
    assert count(sink.store) == 7
    assert sink.store.checkpoint("gateway-log").position == log.stat().st_size  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("access_logs/beats_nginx_access_access.log", 13),
        ("otlp/lnav_otel_collector_logs.jsonl", 11),
        ("otlp/jaeger_memory_otel_traces_01.json", 4),
        ("cloudevents/sdkjava_v1_json_data_with_ext.json", 1),
    ],
)
def test_ingest_imports_public_files_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, expected: int
) -> None:
    db = f"sqlite:///{tmp_path / 'ingest.db'}"
    assert main(["db", "upgrade", "--db", db]) == 0
    path = str(FIXTURES / name)
    capsys.readouterr()
    assert main(["ingest", "--db", db, "--json", path]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["stored"], first["duplicates"], first["quarantined"]) == (expected, 0, 0)
    assert main(["ingest", "--db", db, "--json", path]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["stored"], again["duplicates"]) == (0, expected)


def test_ingest_reads_caddy_logs_through_a_field_map(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'ingest.db'}"
    main(["db", "upgrade", "--db", db])
    path = str(FIXTURES / "access_logs" / "lnav_caddy_access.1.jsonl")
    capsys.readouterr()
    assert main(["ingest", "--db", db, "--json", "--field-map", "caddy", path]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["files"][path]["format"] == "json_access" and summary["stored"] == 4


# No public Envoy or API Gateway access-log files exist (both are user-defined formats): these lines
# follow Envoy's documented JSON keys (as Istio and Envoy Gateway configure them) and an API Gateway
# $context template with the variables AWS documents. Both stamp the time the request began.
ENVOY_LINE = {
    "start_time": "2026-11-25T10:00:00.000Z",
    "method": "GET",
    "path": "/orders/113-0000001-0000001",
    "response_code": 504,
    "duration": 30000,
    "upstream_cluster": "marketplace-amz",
    "request_id": "5b3c0d1e-0000-4000-8000-000000000001",
}
APIGW_LINE = {
    "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
    "ip": "203.0.113.7",
    "requestTimeEpoch": 1795600800000,
    "httpMethod": "POST",
    "path": "/purchase-orders/PO-451001",
    "status": "201",
    "responseLatency": 250,
    "apiId": "marketplace-b2b",
}


@pytest.mark.parametrize(
    ("field_map", "document", "operation", "key", "seconds"),
    [
        (
            "envoy",
            ENVOY_LINE,
            "GET /orders/{marketplace_order}",
            ["marketplace_order", "113-0000001-0000001", True],
            30,
        ),
        ("aws_apigw", APIGW_LINE, "POST /purchase-orders/{po_number}", ["po_number", "PO-451001", True], 0.25),
    ],
)
def test_gateways_that_stamp_the_start_of_a_request_end_it_after_its_duration(
    tmp_path: Path, field_map: str, document: dict, operation: str, key: list, seconds: float
) -> None:
    """A request that hung for 30 s ended 30 s after the time its gateway logged: read as the end, it
    would seem to have finished before it began."""
    path = tmp_path / f"{field_map}.jsonl"
    path.write_text(json.dumps(document) + "\n")
    db = f"sqlite:///{tmp_path / 'gateways.db'}"
    assert main(["db", "upgrade", "--db", db]) == 0
    assert main(["ingest", "--db", db, "--field-map", field_map, str(path)]) == 0
    store = Store.open(db)
    with store.engine.connect() as conn:
        [row] = conn.execute(select(observations))
    store.close()
    assert (row.system, row.operation) == (document.get("upstream_cluster") or document["apiId"], operation)
    assert row.start_time == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    assert (row.end_time - row.start_time).total_seconds() == seconds
    assert key in row.extracted_keys


def stored(db: str) -> tuple[set[str], int]:
    store = Store.open(db)
    with store.engine.connect() as conn:
        ids = set(conn.execute(select(observations.c.natural_id)).scalars())
    rejected = count(store, quarantine)
    store.close()
    return ids, rejected


def test_ingest_parsing_ahead_in_a_worker_stores_what_parsing_in_process_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "big.log"
    write(path, *range(30_000))  # about 3 MB: several chunks in flight at once
    with path.open("a") as handle:
        handle.write("this is not an access log line\n")
    write(path, *range(30_000, 30_010))
    summaries = {}
    for workers in ("1", "0"):
        db = f"sqlite:///{tmp_path / f'workers-{workers}.db'}"
        assert main(["db", "upgrade", "--db", db]) == 0
        capsys.readouterr()
        assert main(["ingest", "--db", db, "--json", "--parse-workers", workers, str(path)]) == 0
        summaries[workers] = json.loads(capsys.readouterr().out)
        summaries[workers]["rows"] = stored(db)
    ids, rejected = summaries["1"].pop("rows")
    assert (len(ids), rejected) == (30_010, 1)
    assert summaries["1"]["stored"] == 30_010 and summaries["1"]["quarantined"] == 1
    assert summaries["0"].pop("rows") == (ids, rejected)
    assert summaries["0"] == summaries["1"]


def test_ingest_names_a_missing_file_and_a_directory_and_stores_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'nothing.db'}"
    assert main(["db", "upgrade", "--db", db]) == 0
    present = tmp_path / "present.log"
    write(present, 1, 2)
    capsys.readouterr()
    assert main(["ingest", "--db", db, str(present), str(tmp_path / "absent.log"), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'absent.log'}: no such file" in err
    assert f"{tmp_path} is a directory; name the files in it, as {tmp_path}/*\n" in err, "a .log and a .db in it"
    assert stored(db) == (set(), 0)
    nested = tmp_path / "export"
    (nested / "otlp").mkdir(parents=True)
    (nested / "otlp" / "day-1.jsonl").write_text("")
    assert main(["ingest", "--db", db, str(nested)]) == 2
    assert f"{nested} is a directory; name the files in it, as {nested}/*/*.jsonl" in capsys.readouterr().err


def _import(store: Store, path: Path) -> tuple[int, int]:
    from syncwatch.commands.ingest import import_file

    config = load_config(None, {"db": store.url}, environ={})
    done = import_file(FileSpec(str(path), "combined", "gateway-log"), Sink(store, config), lambda _done: None)
    return done.stored, done.duplicates


def test_a_files_lines_get_ids_in_file_order(store: Store, tmp_path: Path) -> None:
    """Ordered ids append to the natural-id index; and the same file read again stores nothing."""
    log = tmp_path / "gateway.log"
    write(log, *range(300), 7)
    assert _import(store, log) == (301, 0)
    with store.engine.connect() as conn:
        ids = [nid for (nid,) in conn.execute(select(observations.c.natural_id).order_by(observations.c.id))]
    assert ids == sorted(ids) and all(nid.startswith("line/") for nid in ids)
    assert _import(store, log) == (0, 301)


def test_a_database_with_hashed_line_ids_keeps_them_so_a_file_read_again_dedupes(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Lines stored by an earlier version (hashed ids, no recorded choice) are not stored again."""
    from dataclasses import replace

    from collectors.access_log import LineFormat, parse_lines
    from collectors.tailer import first_line_identity
    from syncwatch.store.writes import LINE_IDS

    log = tmp_path / "gateway.log"
    write(log, *range(20))
    config = load_config(None, {"db": store.url}, environ={})
    earlier = Sink(store, config)
    with open(log, "rb") as handle:
        identity = f"{first_line_identity(handle) or ''}:0"
    context = replace(earlier.context("gateway-log"), ordered_line_ids=False)
    earlier.commit(parse_lines(log.read_bytes(), context, LineFormat(system="gateway"), 0, identity), "gateway-log")
    with store.engine.begin() as conn:  # as before this version: no choice recorded
        conn.exec_driver_sql(f"DELETE FROM checkpoints WHERE source = '{LINE_IDS}'")
    with caplog.at_level("INFO", logger="collectors.sink"):
        assert _import(store, log) == (0, 20)
    assert count(store) == 20
    assert "stored by an earlier version" in caplog.text  # the operator learns why imports stay slower


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/listings/RUG-3116/quantity", "/listings/{id}/quantity"),
        ("/v1/users/42", "/v1/users/{id}"),
        ("/files/3f2504e0-4f89-11d3-9a0c-0305e82c3301", "/files/{id}"),
        ("/parcels/1Z999AA10123456784/events", "/parcels/{id}/events"),
        ("/api/v2/items", "/api/v2/items"),
        ("/oauth2/token", "/oauth2/token"),
        ("/healthz", "/healthz"),
    ],
)
def test_a_path_no_template_names_is_grouped_by_its_words_not_its_ids(path: str, route: str) -> None:
    from collectors.routes import generic_route

    assert generic_route(path) == route


@pytest.mark.parametrize(
    ("tail", "seconds"),
    [
        (' "t" 0.250', 0.25),
        (' "t" upstream=10.0.0.2:80 rt=0.250 uct=0.001 urt=0.249', 0.25),
        (' "t" request_time=1.5 upstream_response_time=1.4', 1.5),
        (' "t" urt=0.249', None),
        (' "t"', None),
    ],
)
def test_a_combined_line_takes_its_request_time_last_or_named_rt(tail: str, seconds: float | None) -> None:
    """nginx's timed formats write rt=$request_time after the agent: the request read as taking no time."""
    from collectors.access_log import LineFormat, parse_combined

    line = '10.0.0.1 - - [25/Nov/2026:10:00:00 +0000] "GET /orders/1 HTTP/1.1" 200 5 "-"' + tail
    duration = parse_combined(line, LineFormat()).duration_ns
    assert duration == (None if seconds is None else int(seconds * 1e9))


def test_access_log_lines_for_different_skus_are_one_endpoint(tmp_path: Path) -> None:
    log = tmp_path / "edge.log"
    text = '10.0.0.1 - - [25/Nov/2026:10:00:0{n} +0000] "PUT {path} HTTP/1.1" 200 5 "-" "t" 0.01\n'
    paths = ("/products/RUG-3116/images", "/products/CAB-1515/images", "/api/v2/healthz")
    log.write_text("".join(text.format(n=n, path=path) for n, path in enumerate(paths)))
    db = f"sqlite:///{tmp_path / 'routes.db'}"
    assert main(["db", "upgrade", "--db", db]) == 0
    assert main(["ingest", "--db", db, str(log)]) == 0
    store = Store.open(db)
    with store.engine.connect() as conn:
        rows = conn.execute(select(observations.c.operation, observations.c.attributes).order_by(observations.c.id))
        stored = [(operation, attributes["url.path"]) for operation, attributes in rows]
    store.close()
    assert stored == [
        ("PUT /products/{id}/images", "/products/RUG-3116/images"),
        ("PUT /products/{id}/images", "/products/CAB-1515/images"),
        ("PUT /api/v2/healthz", "/api/v2/healthz"),
    ]


def test_an_apache_log_stamps_arrival_so_a_tailer_says_time_is_start(tmp_path: Path) -> None:
    """nginx's $time_local is when the line was written, Apache's %t when the request arrived: the
    same combined line means two different starts, so the tailer's config says which it is."""
    log = tmp_path / "apache.log"
    log.write_text('10.0.0.1 - - [25/Nov/2026:10:00:00 +0000] "GET /healthz HTTP/1.1" 200 5 "-" "t" 2500000\n')
    config = tmp_path / "syncwatch.toml"
    config.write_text(
        f'[[tailers]]\npath = "{log}"\nformat = "combined"\nrequest_time_unit = "us"\ntime_is = "start"\n'
    )
    db = f"sqlite:///{tmp_path / 'apache.db'}"
    assert main(["db", "upgrade", "--db", db]) == 0
    assert main(["ingest", "--db", db, "--config", str(config), str(log)]) == 0
    store = Store.open(db)
    with store.engine.connect() as conn:
        [row] = conn.execute(select(observations))
    store.close()
    assert row.start_time == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    assert (row.end_time - row.start_time).total_seconds() == 2.5


def test_a_tailed_path_that_does_not_exist_is_named_once_and_read_once_it_appears(
    sink: Sink, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "acces.log"
    tailer = FileTailer(FileSpec(str(path), "combined", "edge"), sink)
    with caplog.at_level("INFO", logger="collectors.tailer"):
        for _ in range(3):
            assert tailer.poll().stored == 0
        write(path, 1, 2)
        assert tailer.poll().stored == 2
    assert [r.getMessage() for r in caplog.records] == [
        f"{path} does not exist (yet); it is tailed from its first line once it does",
        f"{path} appeared; tailing it",
    ]


@pytest.mark.parametrize(
    ("kind", "text", "reason"),
    [
        ("combined", '10.0.0.1 - - [25/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 999 5 "-" "t" 0.01', "status 999 is"),
        (
            "combined",
            '10.0.0.1 - - [31/Feb/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "t" 0.01',
            "time '31/Feb/2026:10:00:00 +0000' is no real time: day is out of range for month",
        ),
        (
            "json_access",
            '{"started_at": 1764064800000, "request": {"method": "GET", "uri": "/"}, '
            '"response": {"status": 200}, "latencies": {"request": -5}}',
            "duration is negative (-0.005 s)",
        ),
        (
            "json_access",
            '{"started_at": "soon", "request": {"method": "GET", "uri": "/"}, "response": {"status": 200}}',
            "time 'soon' is neither an epoch number, an ISO 8601 date nor",
        ),
        (
            "json_access",
            '{"request": {"method": "GET", "uri": "/"}, "response": {"status": 200}}',
            "line has no time (the field map looks for time in started_at)",
        ),
    ],
)
def test_access_log_lines_that_cannot_be_true_are_quarantined_with_why(
    sink: Sink, kind: str, text: str, reason: str
) -> None:
    from collectors.access_log import LineFormat, parse_lines

    parsed = parse_lines(text.encode() + b"\n", sink.context("gateway"), LineFormat(kind=kind))
    assert not parsed.rows and reason in parsed.rejections[0].reason, parsed.rejections


def _otlp_documents(indent: int | None, copies: int) -> tuple[bytes, list[int]]:
    """Copies of a public OTLP JSON document with their own trace ids, printed with ``indent``,
    and the byte offset each document ends at (with its newline)."""
    document = json.loads((FIXTURES / "otlp/jaeger_memory_otel_traces_01.json").read_text())
    data, ends = b"", []
    for n in range(copies):
        text = json.dumps(document, indent=indent)
        for span in {s["traceId"] for r in document["resourceSpans"] for ss in r["scopeSpans"] for s in ss["spans"]}:
            text = text.replace(span, f"{n:04x}{span[4:]}")
        data += text.encode() + b"\n"
        ends.append(len(data))
    return data, ends


def test_documents_without_indentation_written_back_to_back_are_read_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The second began on the line the first ended on ('}{') and was refused in pieces."""
    db = f"sqlite:///{tmp_path / 'ingest.db'}"
    assert main(["db", "upgrade", "--db", db]) == 0
    data, ends = _otlp_documents(0, 2)
    path = tmp_path / "traces.json"
    path.write_bytes(data[: ends[0] - 1] + data[ends[0] :])  # no newline between them
    capsys.readouterr()
    assert main(["ingest", "--db", db, "--json", str(path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["stored"], summary["quarantined"]) == (8, 0)


@pytest.mark.parametrize("indent", [None, 0, 2])
def test_safe_end_cuts_concatenated_documents_only_between_them(indent: int | None) -> None:
    data, ends = _otlp_documents(indent, 3)
    cuts = {safe_end(data[:length], documents=True, eof=False) for length in range(1, len(data) + 1)}
    assert cuts <= {0, *ends} and ends[:-1] == sorted(cuts - {0})[: len(ends) - 1]


def test_documents_printed_without_indentation_are_read_whole_across_chunks(sink: Sink, tmp_path: Path) -> None:
    """Inner lines of such a document start with ``{`` as a new document's do; neither a chunk's
    end nor the reader may cut one there."""
    path = tmp_path / "traces.json"
    data, _ = _otlp_documents(0, 20)
    path.write_bytes(data)
    committed = FileTailer(FileSpec(str(path), "otlp_json", "exporter"), sink, chunk=len(data) // 7).poll()
    assert (committed.stored, count(sink.store, quarantine)) == (20 * 4, 0)


def test_ingest_reads_documents_printed_without_indentation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'ingest.db'}"
    assert main(["db", "upgrade", "--db", db]) == 0
    path = tmp_path / "traces.json"
    data, _ = _otlp_documents(0, 2)
    path.write_bytes(data + b'{\n"resourceSpans": [\n{\n"resource": \n}\n]\n}\n')
    capsys.readouterr()
    assert main(["ingest", "--db", db, "--json", str(path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["stored"], summary["duplicates"], summary["quarantined"]) == (8, 0, 1)


def test_a_truncated_json_line_costs_only_itself(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The reader tries a line that opens more than it closes across the next; the next line, whole
    in itself, is not taken down with it."""
    db = f"sqlite:///{tmp_path / 'ingest.db'}"
    assert main(["db", "upgrade", "--db", db]) == 0
    path = tmp_path / "traces.jsonl"
    data, _ = _otlp_documents(None, 2)
    first, second = data.splitlines(keepends=True)
    path.write_bytes(first + first[: len(first) // 2] + b"\n" + second)
    capsys.readouterr()
    assert main(["ingest", "--db", db, "--json", str(path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["stored"], summary["duplicates"], summary["quarantined"]) == (8, 0, 1)


def test_a_gateway_time_without_an_offset_is_utc_whatever_the_machines_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """It was read in the reading machine's zone: 9 h early in Tokyo, and in Chicago every line was
    quarantined as 'in the future'."""
    expected = int(datetime(2026, 11, 27, 20, 10, tzinfo=UTC).timestamp()) * 10**9
    for zone in ("Asia/Tokyo", "America/Chicago", "UTC"):
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        assert json_time_ns("2026-11-27T20:10:00") == expected, zone
    monkeypatch.undo()
    time.tzset()


def _ingest(db: str, capsys: pytest.CaptureFixture[str], *argv: str) -> dict:  # type: ignore[type-arg]
    capsys.readouterr()
    main(["ingest", "--db", db, "--json", *argv])
    return json.loads(capsys.readouterr().out)


def test_a_byte_order_mark_is_not_part_of_the_first_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Windows tools start files with one: it made a JSON log read as combined (every line refused)
    and ended up inside a combined line's client address."""
    db = f"sqlite:///{tmp_path / 'ingest.db'}"
    assert main(["db", "upgrade", "--db", db]) == 0
    combined, gateway = tmp_path / "nginx.log", tmp_path / "kong.log"
    combined.write_bytes(b"\xef\xbb\xbf" + line(1).encode() + line(2).encode())
    kong = {
        "started_at": 1764245400000,
        "request": {"method": "GET", "uri": "/orders/SO-1"},
        "response": {"status": 200},
    }
    gateway.write_bytes(b"\xef\xbb\xbf" + (json.dumps(kong) + "\n").encode() * 2)
    assert _ingest(db, capsys, str(combined))["stored"] == 2
    summary = _ingest(db, capsys, str(gateway))
    assert (summary["stored"], summary["quarantined"]) == (2, 0)
    with Store.open(db).engine.connect() as conn:
        stored = conn.execute(select(observations.c.attributes, observations.c.operation)).all()
    assert len(stored) == 4 and not [row for row in stored if "\ufeff" in json.dumps(list(row), ensure_ascii=False)]


def test_one_file_imported_under_three_spellings_of_its_path_is_stored_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = f"sqlite:///{tmp_path / 'ingest.db'}"
    assert main(["db", "upgrade", "--db", db]) == 0
    (tmp_path / "m").mkdir()
    write(tmp_path / "m" / "a.log", 1, 2, 3)
    monkeypatch.chdir(tmp_path)
    stored = [_ingest(db, capsys, path)["stored"] for path in ("m/a.log", "./m/a.log", str(tmp_path / "m" / "a.log"))]
    assert stored == [3, 0, 0]


def test_a_field_map_given_means_a_json_gateway_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'ingest.db'}"
    assert main(["db", "upgrade", "--db", db]) == 0
    log = tmp_path / "envoy.log"
    envoy = {"start_time": "2026-11-27T10:00:00.000Z", "method": "GET", "path": "/orders/SO-1", "response_code": 200}
    log.write_text("\ufeff" + json.dumps(envoy) + "\n")
    summary = _ingest(db, capsys, "--field-map", "envoy", str(log))
    assert (summary["stored"], summary["quarantined"]) == (1, 0)
