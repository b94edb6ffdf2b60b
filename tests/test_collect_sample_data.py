"""All of sample_data/ ingests with nothing quarantined, and the store holds what the files hold,
counted here from the files themselves rather than from the collectors' own parsers."""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from syncwatch.cli import main
from syncwatch.store import Store
from syncwatch.store.schema import observations, quarantine

SAMPLE = Path(__file__).parent.parent / "sample_data"
FILES = ("otlp/traces.jsonl", "otlp/logs.jsonl", "access/gateway.log", "access/edge.jsonl", "events/events.jsonl")


def json_lines(path: Path) -> Iterator[Any]:
    with path.open() as handle:
        yield from (json.loads(text) for text in handle if text.strip())


def otlp_items(path: Path, top: str, scope: str, items: str) -> Iterator[dict[str, Any]]:
    for document in json_lines(path):
        for block in document[top]:
            for scope_block in block[scope]:
                yield from scope_block[items]


def expected(relative: str) -> tuple[int, int]:
    """(records in the file, distinct natural ids among them) for one sample file."""
    path = SAMPLE / relative
    if relative == "otlp/traces.jsonl":
        ids = [(s["traceId"], s["spanId"]) for s in otlp_items(path, "resourceSpans", "scopeSpans", "spans")]
        return len(ids), len(set(ids))
    if relative == "otlp/logs.jsonl":
        total = sum(1 for _ in otlp_items(path, "resourceLogs", "scopeLogs", "logRecords"))
        return total, total
    if relative == "events/events.jsonl":
        ids = [(e["source"], e["id"]) for e in json_lines(path)]
        return len(ids), len(set(ids))
    lines = sum(1 for text in path.read_text().splitlines() if text.strip())
    return lines, lines


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], Store]]:
    db = f"sqlite:///{tmp_path_factory.mktemp('sample') / 'sample.db'}"
    assert main(["db", "upgrade", "--db", db]) == 0
    paths = [str(SAMPLE / relative) for relative in FILES]
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["ingest", "--db", db, "--json", *paths]) == 0
    store = Store.open(db)
    yield json.loads(out.getvalue()), store
    store.close()


def test_sample_data_ingests_with_nothing_quarantined(ingested: tuple[dict[str, Any], Store]) -> None:
    summary, store = ingested
    assert summary["quarantined"] == 0
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(quarantine)).scalar_one() == 0


@pytest.mark.parametrize("relative", FILES)
def test_each_sample_file_is_stored_once_per_record(ingested: tuple[dict[str, Any], Store], relative: str) -> None:
    summary, store = ingested
    path = str(SAMPLE / relative)
    records, distinct = expected(relative)
    figures = summary["files"][path]
    assert (figures["stored"], figures["duplicates"], figures["quarantined"]) == (distinct, records - distinct, 0)
    with store.engine.connect() as conn:
        stored = conn.execute(select(func.count()).where(observations.c.source == path)).scalar_one()
        repeats = conn.execute(select(func.sum(observations.c.duplicates)).where(observations.c.source == path))
        assert (stored, repeats.scalar_one() or 0) == (distinct, records - distinct)


def test_sample_data_covers_every_kind(ingested: tuple[dict[str, Any], Store]) -> None:
    _, store = ingested
    with store.engine.connect() as conn:
        rows = conn.execute(select(observations.c.kind, func.count()).group_by(observations.c.kind))
        kinds = Counter({kind: n for kind, n in rows})
    spans, _ = expected("otlp/traces.jsonl")
    assert set(kinds) == {"span", "log", "event"} and kinds["span"] == spans
