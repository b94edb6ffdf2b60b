"""What every command shares: the --db/--config options, and opening config and store."""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syncwatch.config import Config, load_config
from syncwatch.config.settings import PORTS
from syncwatch.model import as_utc
from syncwatch.store import Store

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    """A sub-command: its name, one-line help, options and handler."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Handler
    description: str | None = None

    def register(self, subparsers: Any, *, chosen: bool = True) -> argparse.ArgumentParser:
        """Add the sub-command; its options only when it is the one being run (``chosen``).

        Some commands' options need heavy modules (every benchmark's, say); a command that is
        not run only needs its name and help line in ``syncwatch --help``.
        """
        parser = subparsers.add_parser(self.name, help=self.help, description=self.description or self.help)
        if chosen:
            self.add_arguments(parser)
            parser.set_defaults(handler=self.handler)
        return parser


def add_common_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where")
    group.add_argument("--db", metavar="URL", help="database URL (default: $SYNCWATCH_DB or sqlite:///syncwatch.db)")
    group.add_argument("--config", metavar="FILE", help="config file (default: $SYNCWATCH_CONFIG or packaged defaults)")


def config_from(args: argparse.Namespace, **flags: Any) -> Config:
    """Load the config with the flags this command received (None means not given)."""
    config = load_config(getattr(args, "config", None), {"db": getattr(args, "db", None), **flags})
    logging.getLogger().setLevel(config.log_level.upper())
    return config


def open_store(config: Config, *, require_schema: bool = True) -> Store:
    store = Store.open(config.db, raw_limit=config.quarantine_raw_limit, must_exist=require_schema)
    if require_schema:
        store.require_schema()
    return store


def port(text: str) -> int:
    """An option's TCP port; the operating system would quietly take a larger number modulo 65536."""
    low, high = PORTS
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"expected a port from {low} to {high}, got {value}")
    return value


def iso_time(text: str) -> datetime:
    """An option's ISO-8601 time as aware UTC (a time without an offset is read as UTC)."""
    try:
        return as_utc(datetime.fromisoformat(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO-8601 time like 2026-11-09T00:00:00Z, got {text!r}") from None


def interrupt(_signum: int, _frame: object) -> None:
    """A signal handler that stops a command the way Ctrl-C does: a plain `kill` (SIGTERM) then
    stops what the command started instead of leaving it running without its parent."""
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """Ctrl-C and a plain `kill` both raise KeyboardInterrupt, even where SIGINT was ignored (nohup, &)."""
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
