"""`syncwatch bench sim`: how fast the simulator fast-forwards orders into telemetry files."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from syncwatch.bench import Benchmark, Figures
from syncwatch.sim.clock import DEFAULT_START
from syncwatch.sim.faults import build_profile
from syncwatch.sim.generate import Plan, generate


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--orders", type=int, default=100_000, help="orders to generate (default 100000)")
    parser.add_argument("--days", type=int, default=10, help="days they are spread over (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--out", type=Path, help="keep the files in this folder (default: a temp dir, deleted)")


def _measure(plan: Plan, out: Path) -> Figures:
    began = time.perf_counter()
    summary = generate(plan, out)
    seconds = time.perf_counter() - began
    size = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    return {
        "orders": summary.counts["orders"],
        "spans": summary.counts["spans"],
        "records": summary.records,
        "seconds": round(seconds, 2),
        "orders_per_s": round(summary.counts["orders"] / seconds),
        "records_per_s": round(summary.records / seconds),
        "output_mb": round(size / 1e6, 1),
    }


def _run(args: argparse.Namespace) -> Figures:
    per_day = max(1, args.orders // args.days)
    plan = Plan(args.days, per_day, args.seed, DEFAULT_START, build_profile(["default"]))
    if args.out:
        return _measure(plan, args.out)
    with tempfile.TemporaryDirectory() as tmp:
        return _measure(plan, Path(tmp))


BENCHMARK = Benchmark("sim", "simulator fast-forward: orders and records generated per second", _add_arguments, _run)
