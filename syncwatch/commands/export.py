"""`syncwatch export transactions|exceptions|quarantine`: write them out as JSON lines or CSV."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any, TextIO

from syncwatch.commands.common import Command, add_common_options, config_from, open_store
from syncwatch.model import count as plural
from syncwatch.redact import spreadsheet_safe
from syncwatch.store.reads import (
    CONTEXT_FIELDS,
    EXCEPTION_FIELDS,
    QUARANTINE_FIELDS,
    TRANSACTION_FIELDS,
    iter_exceptions,
    iter_quarantine,
    iter_transactions,
)

WHAT = {"transactions": iter_transactions, "exceptions": iter_exceptions, "quarantine": iter_quarantine}
# A CSV's columns, written even when no row follows: a BI tool reads an empty export as empty, not broken.
COLUMNS = {
    "transactions": TRANSACTION_FIELDS,
    "exceptions": EXCEPTION_FIELDS + CONTEXT_FIELDS,
    "quarantine": QUARANTINE_FIELDS,
}


NOUNS = {"transactions": "transaction", "exceptions": "exception", "quarantine": "quarantined input"}


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_options(parser)
    parser.add_argument("what", choices=sorted(WHAT), help="what to export")
    parser.add_argument("--format", choices=("jsonl", "csv"), default="jsonl", help="output format (default jsonl)")
    parser.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")


def _write(rows: Iterator[dict[str, Any]], fmt: str, out: TextIO, columns: tuple[str, ...]) -> int:
    count = 0
    writer = csv.DictWriter(out, fieldnames=list(columns)) if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    for row in rows:
        if writer is None:
            out.write(json.dumps(row, default=str) + "\n")
        else:
            cells = {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}
            writer.writerow({k: spreadsheet_safe(v) for k, v in cells.items()})
        count += 1
    return count


def _run(args: argparse.Namespace) -> int:
    store = open_store(config_from(args))
    try:
        try:  # before any row is read: a wrong path should not cost a scan of the database
            target = open(args.out, "w", newline="") if args.out else nullcontext(sys.stdout)  # noqa: SIM115
        except OSError as err:
            print(f"syncwatch export: cannot write {args.out}: {err.strerror}", file=sys.stderr)
            return 1
        with store.engine.connect() as conn, target as out:
            count = _write(WHAT[args.what](conn), args.format, out, COLUMNS[args.what])
    finally:
        store.close()
    print(f"exported {plural(count, NOUNS[args.what])}", file=sys.stderr)
    return 0


COMMAND = Command(
    "export", "export transactions, exceptions or quarantined inputs as JSON lines or CSV", _add_arguments, _run
)
