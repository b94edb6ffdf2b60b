"""`syncwatch bench NAME`: run one benchmark, print a table or (with --json) one JSON object."""

from __future__ import annotations

import argparse
import json
from functools import cache
from importlib import import_module

from syncwatch.bench import Benchmark, Figures
from syncwatch.commands.common import Command

MODULES = ("store", "sim", "ingest", "correlate", "actions", "dashboard")


@cache
def benchmarks() -> dict[str, Benchmark]:
    """Every benchmark by name; imported only for `syncwatch bench`, as they load the whole stack."""
    loaded = (import_module(f"syncwatch.bench.{module}").BENCHMARK for module in MODULES)
    return {bench.name: bench for bench in loaded}


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    names = parser.add_subparsers(dest="benchmark", metavar="NAME", required=True)
    for bench in benchmarks().values():
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
    bench = benchmarks()[args.benchmark]
    figures = bench.run(args)
    print(json.dumps(figures) if args.json else render(bench.name, figures))
    return 0


COMMAND = Command("bench", "measure a capability and print its figures", _add_arguments, _run)
