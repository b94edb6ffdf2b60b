"""`syncwatch bench NAME`: run one benchmark, print a table or (with --json) one JSON object."""

from __future__ import annotations

import argparse
import json

from syncwatch.bench import Benchmark, Figures
from syncwatch.bench import actions as actions_bench
from syncwatch.bench import correlate as correlate_bench
from syncwatch.bench import dashboard as dashboard_bench
from syncwatch.bench import ingest as ingest_bench
from syncwatch.bench import sim as sim_bench
from syncwatch.bench import store as store_bench
from syncwatch.commands.common import Command

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        store_bench.BENCHMARK,
        sim_bench.BENCHMARK,
        ingest_bench.BENCHMARK,
        correlate_bench.BENCHMARK,
        actions_bench.BENCHMARK,
        dashboard_bench.BENCHMARK,
    )
}


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    names = parser.add_subparsers(dest="benchmark", metavar="NAME", required=True)
    for bench in BENCHMARKS.values():
        sub = names.add_parser(bench.name, help=bench.help, description=bench.help)
        bench.add_arguments(sub)
        sub.add_argument("--json", action="store_true", help="print one JSON object of figures")


def render(name: str, figures: Figures) -> str:
    width = max(map(len, figures))
    rows = [
        f"{key:<{width}}  {value:>14,}" if isinstance(value, int | float) else f"{key:<{width}}  {value:>14}"
        for key, value in figures.items()
    ]
    return "\n".join([f"bench {name}", *rows])


def _run(args: argparse.Namespace) -> int:
    bench = BENCHMARKS[args.benchmark]
    figures = bench.run(args)
    print(json.dumps(figures) if args.json else render(bench.name, figures))
    return 0


COMMAND = Command("bench", "measure a capability and print its figures", _add_arguments, _run)
