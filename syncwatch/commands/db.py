"""`syncwatch db upgrade`: create or migrate the schema (also run by serve and demo at start)."""

from __future__ import annotations

import argparse

from syncwatch.commands.common import Command, add_common_options, config_from, open_store
from syncwatch.store import migrate
from syncwatch.store.docs import schema_markdown


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


def _run(args: argparse.Namespace) -> int:
    if args.db_action == "schema":
        print(schema_markdown())
        return 0
    store = open_store(config_from(args), require_schema=False)
    try:
        store.upgrade()
        print(f"{store.url}: schema at revision {migrate.head_revision()}")
    finally:
        store.close()
    return 0


COMMAND = Command("db", "create, migrate or describe the database schema", _add_arguments, _run)
