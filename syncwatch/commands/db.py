"""`syncwatch db upgrade`: create or migrate the schema (also run by serve and demo at start);
`db schema` prints it; `db prune` drops history older than the retention (`serve` does it every 6 hours);
`db backup` copies a SQLite database consistently while `serve` writes to it."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path

from syncwatch.commands.common import Command, add_common_options, config_from, open_store
from syncwatch.config import Config
from syncwatch.model import count, utcnow
from syncwatch.store import Store, migrate
from syncwatch.store.backup import BackupFailed
from syncwatch.store.correlation import CORRELATOR_CHECKPOINT
from syncwatch.store.docs import schema_markdown
from syncwatch.store.retention import Pruned, prune


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="db_action", metavar="ACTION", required=True)
    upgrade = actions.add_parser(
        "upgrade",
        help="apply every pending migration",
        description="Create the schema or bring it to this version's revision.",
    )
    add_common_options(upgrade)
    actions.add_parser(
        "schema",
        help="print the SQL schema as Markdown (the documented contract)",
        description="Print every table and column with its type and meaning, as Markdown.",
    )
    pruning = actions.add_parser(
        "prune",
        help="drop history older than the retention (setting retention_days)",
        description="Drop observations, transactions not seen since, quarantined inputs and alerts older than "
        "the retention. A transaction goes whole or not at all; observations the correlator has not read stay; "
        "the audit log is never pruned.",
    )
    add_common_options(pruning)
    pruning.add_argument("--older-than", type=_days, metavar="DAYS", help="prune older than DAYS instead")
    pruning.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")
    pruning.add_argument("--json", action="store_true", help="print one JSON object")
    backup = actions.add_parser(
        "backup",
        help="copy a SQLite database to FILE, consistently, while serve keeps writing",
        description="Write a consistent copy of the SQLite database to FILE (which must not exist) and check it. "
        "Copying the database file itself is not a backup: its latest commits sit in the -wal file beside it. "
        "On PostgreSQL, use pg_dump.",
    )
    add_common_options(backup)
    backup.add_argument("file", metavar="FILE", help="the copy to write; never overwritten")
    backup.add_argument("--json", action="store_true", help="print one JSON object")


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        days = 0
    if days < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of days, 1 or more, got {text!r}")
    return days


def _run(args: argparse.Namespace) -> int:
    if args.db_action == "schema":
        print(schema_markdown())
        return 0
    if args.db_action == "prune":
        return _prune(args)
    if args.db_action == "backup":
        return _backup(args)
    store = open_store(config_from(args), require_schema=False)
    try:
        store.upgrade()
        print(f"{store.url}: schema at revision {migrate.head_revision()}")
    finally:
        store.close()
    return 0


def prune_expired(store: Store, days: int, dry_run: bool = False, now: datetime | None = None) -> Pruned:
    """Prune what is older than ``days`` before ``now``, up to where the correlator has read."""
    read = store.checkpoint(CORRELATOR_CHECKPOINT)
    return prune(store, (now or utcnow()) - timedelta(days=days), read.position if read else 0, dry_run)


def pruned_text(pruned: Pruned, days: int, dry_run: bool = False) -> str:
    """One sentence of what went, for the CLI and serve's log."""
    gone = (
        f"{count(pruned.transactions, 'transaction')} (with {count(pruned.exceptions, 'exception')}), "
        f"{count(pruned.observations, 'observation')}, {count(pruned.quarantine, 'quarantined input')} "
        f"and {count(pruned.alerts, 'alert')}"
    )
    text = f"{'would prune' if dry_run else 'pruned'} {gone} older than {count(days, 'day')}"
    if pruned.held_by and pruned.observations_kept_from:
        text += (
            f"; observations since {pruned.observations_kept_from:%Y-%m-%d} stay, as transaction {pruned.held_by}"
            " began then and was seen since"
        )
    return text


def _prune(args: argparse.Namespace) -> int:
    config: Config = config_from(args)
    days = args.older_than or config.retention_days
    if days <= 0:
        print(f"retention_days is {days}, so nothing is pruned; `--older-than DAYS` prunes once")
        return 0
    store = open_store(config)
    try:
        pruned = prune_expired(store, days, args.dry_run)
    finally:
        store.close()
    if args.json:
        print(json.dumps({**asdict(pruned), "days": days, "dry_run": args.dry_run}, default=str))
    else:
        print(pruned_text(pruned, days, args.dry_run))
    return 0


def _backup(args: argparse.Namespace) -> int:
    target = Path(args.file)
    store = open_store(config_from(args), require_schema=False)
    try:
        database = store.sqlite_file()
        if database is None:
            return _refuse(
                f"{store.url} is not a SQLite file; back PostgreSQL up with pg_dump "
                "(pg_dump --format=custom --file=FILE DATABASE), which is consistent while serve runs"
            )
        store.require_schema()
        if target.exists():
            return _refuse(f"{target} exists; name a new file (a backup never overwrites one)")
        if not target.parent.is_dir():
            return _refuse(f"{target.parent} is not a directory")
        try:
            made = store.backup(target)
        except BackupFailed as err:
            print(f"syncwatch: {err}", file=sys.stderr)
            return 1
    finally:
        store.close()
    if args.json:
        print(json.dumps({"file": str(made.path), "bytes": made.size, "seconds": round(made.seconds, 3)}))
        return 0
    print(
        f"backed up {store.url} to {made.path}: {made.size / 1e6:,.1f} MB in {made.seconds:.1f} s, checked by "
        f"SQLite's quick_check. To restore: stop serve and the dashboard, remove {database}-wal and "
        f"{database}-shm if they are there, and copy {made.path} to {database}."
    )
    return 0


def _refuse(sentence: str) -> int:
    print(f"syncwatch: {sentence}", file=sys.stderr)
    return 2


COMMAND = Command("db", "create, migrate, describe, prune or back up the database", _add_arguments, _run)
