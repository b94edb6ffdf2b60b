"""`syncwatch stats`: row counts per table, how many deliveries were duplicates, what waits for
correlation, and what was quarantined from where and why: a collector's day at a glance."""

from __future__ import annotations

import argparse
import json

from syncwatch.commands.common import Command, add_common_options, config_from, open_store
from syncwatch.store.correlation import correlation_backlog
from syncwatch.store.reads import quarantine_reasons, redeliveries, unlinked_observations

KINDS = {"span": "calls", "log": "log lines", "event": "events"}


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_options(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _run(args: argparse.Namespace) -> int:
    store = open_store(config_from(args))
    try:
        counts = store.counts()
        with store.engine.connect() as conn:
            repeated = redeliveries(conn)
            reasons = quarantine_reasons(conn) if counts["quarantine"] else []
            backlog = correlation_backlog(conn)
            unlinked = unlinked_observations(conn)
    finally:
        store.close()
    if args.json:
        waiting = backlog.waiting_since.isoformat() if backlog.waiting_since else None
        print(
            json.dumps(
                {
                    **counts,
                    "redeliveries": repeated,
                    "quarantined_by": reasons,
                    "correlation_backlog": backlog.observations,
                    "waiting_since": waiting,
                    "unlinked_by": unlinked,
                }
            )
        )
        return 0
    width = max(map(len, counts))
    for table, count in counts.items():
        print(f"{table:<{width}}  {count:>12,}")
    print(f"\nre-deliveries stored once: {repeated:,} (a partner sending the same thing twice shows here)")
    print(f"correlation: {backlog.describe() if backlog.observations else 'up to date: every observation was read'}")
    if unlinked:
        print(
            "\nbelonging to no order or other transaction (no business key, no trace shared with one);"
            "\ncounted on Endpoints only. A log line of a POST names no order in its path, and a partner's 5xx"
            "\noften carries no keys, so some are expected; an event or a call that succeeded listed here"
            "\nusually means a [[key_rules]] entry misses its system or field."
            "\nEvents and calls first, then log lines, most first:"
        )
        for u in unlinked:
            print(f"{u['unlinked']:>10,} of {u['observations']:,}  {u['system']} {KINDS[u['kind']]} {u['operation']}")
    if reasons:
        shown = sum(r["items"] for r in reasons)
        more = f", {counts['quarantine'] - shown:,} more under other reasons" if counts["quarantine"] > shown else ""
        print(f"\nquarantined, most frequent first{more}:")
        for r in reasons:
            again = f" (rejected {r['deliveries']:,} times)" if r["deliveries"] > r["items"] else ""
            print(f"{r['items']:>10,}  {r['source']}: {r['reason']}{again}")
    return 0


COMMAND = Command(
    "stats", "count what is stored, re-delivered and quarantined (with sources and reasons)", _add_arguments, _run
)
