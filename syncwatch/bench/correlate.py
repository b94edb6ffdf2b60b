"""`syncwatch bench correlate`: one pass from empty over a simulated backlog, then a small
incremental pass on top of that history — the two costs the correlator must keep apart — and
then retention dropping the first half of the week."""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from correlator.passes import CHECKPOINT, Correlator
from syncwatch.bench import Benchmark, Figures
from syncwatch.config import load_config
from syncwatch.sim.generate import observed_files
from syncwatch.store import Checkpoint, Store
from syncwatch.store.retention import prune

DAYS = 7
START = datetime(2026, 11, 2, tzinfo=UTC)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--orders", type=int, default=100_000, help="orders to simulate (default 100000)")
    parser.add_argument("--data", metavar="DIR", help="reuse files made by `syncwatch sim --generate` (7 days)")
    parser.add_argument("--db", metavar="URL", help="an empty database to use (default: a new SQLite file)")
    parser.add_argument("--incremental", type=int, default=1_000, help="observations in the incremental pass")


def _syncwatch(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "syncwatch", *args], check=True, stdout=subprocess.DEVNULL)


def _prepare(args: argparse.Namespace, tmp: Path) -> Store:
    data = Path(args.data) if args.data else tmp / "data"
    if not args.data:
        per_day = max(1, args.orders // DAYS)
        _syncwatch("sim", "--generate", "--days", str(DAYS), "--orders-per-day", str(per_day), "--out", str(data))
    url = args.db or f"sqlite:///{tmp / 'bench.db'}"
    store = Store.open(url)
    store.upgrade()
    if store.counts()["observations"]:
        raise SystemExit("syncwatch bench correlate needs an empty database")
    _syncwatch("ingest", "--db", url, *observed_files(data))
    return store


class _Steps:
    """Seconds each step of a pass took, from the steps the pass tells as it goes (what
    `syncwatch correlate` shows on a terminal): linking includes gathering each transaction's
    earlier observations; saving runs to the pass's end (the commit, and on PostgreSQL the
    planner statistics a large pass refreshes)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.step: str | None = None
        self.since = 0.0

    def __call__(self, step: str, _done: int, _of: int) -> None:
        if step != self.step:
            self.end()
            self.step, self.since = step, time.perf_counter()

    def end(self) -> None:
        if self.step is not None:
            self.seconds[self.step] = self.seconds.get(self.step, 0.0) + time.perf_counter() - self.since
            self.step = None


def _children_cpu_s() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _run(args: argparse.Namespace) -> Figures:
    with tempfile.TemporaryDirectory() as folder:
        store = _prepare(args, Path(folder))
        try:
            as_of = START + timedelta(days=DAYS)
            correlator = Correlator(store, load_config(), clock=lambda: as_of)
            cpu, helpers_cpu, steps = time.process_time(), _children_cpu_s(), _Steps()
            full = correlator.run_pass(progress=steps)
            steps.end()
            full_cpu_s = time.process_time() - cpu  # every thread of this process; the database server's apart
            helpers_cpu_s = _children_cpu_s() - helpers_cpu  # the helper processes of the pass
            # Replay the newest observations as if they had just arrived, on top of all history.
            store.save_checkpoint(Checkpoint(CHECKPOINT, max(0, full.observations - args.incremental)))
            began = time.perf_counter()
            step = correlator.run_pass()
            incremental_s = time.perf_counter() - began
            transactions = store.counts()["transactions"]
            # Retention on the same history: the first half of the week goes.
            read = store.checkpoint(CHECKPOINT)
            began = time.perf_counter()
            pruned = prune(store, START + timedelta(days=DAYS / 2), read.position if read else 0)
            prune_s = time.perf_counter() - began
            return {
                "engine": store.dialect,
                "observations": full.observations,
                "transactions": transactions,
                "from_empty_s": round(full.seconds, 2),
                "from_empty_cpu_s": round(full_cpu_s, 2),
                **{f"{told}_s": round(seconds, 2) for told, seconds in steps.seconds.items()},
                "helpers_cpu_s": round(helpers_cpu_s, 2),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                "helper_private_mb": full.helpers_private_mib,  # beyond what it shares with this process
                "observations_per_s": round(full.observations / full.seconds),
                "incremental_observations": step.observations,
                "incremental_s": round(incremental_s, 3),
                "pruned_transactions": pruned.transactions,
                "pruned_observations": pruned.observations,
                "prune_half_s": round(prune_s, 2),
            }
        finally:
            store.close()


BENCHMARK = Benchmark(
    "correlate", "a correlator pass from empty, then an incremental one on its history", _add_arguments, _run
)
