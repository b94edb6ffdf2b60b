"""`syncwatch bench store`: how fast the store writes observations, new and re-delivered."""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from syncwatch.bench import Benchmark, Figures, percentile
from syncwatch.model import BusinessKey, Observation, ObservationKind
from syncwatch.store import Store


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="URL", help="database to write to (default: a new SQLite file in a temp dir)")
    parser.add_argument("--observations", type=int, default=100_000, help="how many to write (default 100000)")
    parser.add_argument("--batch", type=int, default=1_000, help="observations per write (default 1000)")


def synthetic(count: int, run: str = "bench") -> list[Observation]:
    """Observations shaped like the simulator's spans: two identity keys and one attribute key."""
    start = datetime(2026, 1, 5, tzinfo=UTC)
    return [
        Observation(
            natural_id=f"{run}:{i:012d}",
            kind=ObservationKind.SPAN,
            system="erp",
            operation="POST /sales-orders",
            start=start + timedelta(milliseconds=i),
            end=start + timedelta(milliseconds=i + 20),
            status_code=201,
            trace_id=f"{i:032x}",
            span_id=f"{i:016x}",
            source="bench",
            keys=(
                BusinessKey("marketplace_order", f"113-{i:07d}-0000001"),
                BusinessKey("erp_order", f"SO-{i}"),
                BusinessKey("sku", f"SKU-{i % 500}", identity=False),
            ),
            attributes={"http.request.method": "POST", "http.response.status_code": 201},
        )
        for i in range(count)
    ]


def _write_all(store: Store, batches: list[list[Observation]]) -> tuple[float, list[float]]:
    timings = []
    began = time.perf_counter()
    for batch in batches:
        t0 = time.perf_counter()
        store.write_observations(batch)
        timings.append((time.perf_counter() - t0) * 1000)
    return time.perf_counter() - began, timings


def _run(args: argparse.Namespace) -> Figures:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(args.db or f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            store.upgrade()
            items = synthetic(args.observations, run=uuid.uuid4().hex)
            batches = [items[i : i + args.batch] for i in range(0, len(items), args.batch)]
            fresh_s, timings = _write_all(store, batches)
            again_s, _ = _write_all(store, batches)
            return {
                "engine": store.dialect,
                "observations": args.observations,
                "observations_per_s": round(args.observations / fresh_s),
                "redelivered_per_s": round(args.observations / again_s),
                "batch_p50_ms": round(percentile(timings, 0.5), 2),
                "batch_p95_ms": round(percentile(timings, 0.95), 2),
            }
        finally:
            store.close()


BENCHMARK = Benchmark("store", "observation writes per second, new and re-delivered", _add_arguments, _run)
