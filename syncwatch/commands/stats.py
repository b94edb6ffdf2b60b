"""`syncwatch stats`: row counts per table, quarantine included, as a table or JSON."""

from __future__ import annotations

import argparse
import json

from syncwatch.commands.common import Command, add_common_options, config_from, open_store


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _run(args: argparse.Namespace) -> int:
    store = open_store(config_from(args))
    try:
        counts = store.counts()
    finally:
        store.close()
    if args.json:
        print(json.dumps(counts))
    else:
        width = max(map(len, counts))
        for table, count in counts.items():
            print(f"{table:<{width}}  {count:>12,}")
    return 0


COMMAND = Command("stats", "count what is stored, quarantine included", _add_arguments, _run)
