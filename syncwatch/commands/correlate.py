"""`syncwatch correlate`: one correlator pass over everything stored since the last one."""

from __future__ import annotations

import argparse
import json
from datetime import datetime

from syncwatch.commands.common import Command, add_common_options, config_from, open_store
from syncwatch.model import as_utc, utcnow


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_options(parser)
    parser.add_argument(
        "--now",
        type=_time,
        help="evaluate SLAs as of this ISO-8601 time (default: now); "
        "for replaying historical data such as sample_data/",
    )
    parser.add_argument(
        "--batch",
        type=int,
        help="observations per database transaction (default: the whole backlog, up to the correlator's limit)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def _time(text: str) -> datetime:
    try:
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO-8601 time like 2026-11-09T00:00:00Z, got {text!r}") from None


def _run(args: argparse.Namespace) -> int:
    from correlator.passes import BACKLOG, Correlator

    config = config_from(args)
    store = open_store(config)
    now = args.now
    try:
        result = Correlator(store, config, clock=(lambda: now) if now else utcnow).run_pass(args.batch or BACKLOG)
    finally:
        store.close()
    summary = {
        "observations": result.observations,
        "transactions": result.transactions,
        "exceptions": result.exceptions,
        "refused_links": result.refused_links,
        "seconds": round(result.seconds, 3),
    }
    print(json.dumps(summary) if args.json else ", ".join(f"{k}: {v:,}" for k, v in summary.items()))
    return 0


COMMAND = Command(
    "correlate", "run one correlator pass: link, stage, evaluate SLAs, derive exceptions", _add_arguments, _run
)
