"""Commands whose capability is not built yet: they say so plainly and exit with 2."""

from __future__ import annotations

import argparse
import sys

from syncwatch.commands.common import Command

PENDING: dict[str, tuple[str, str]] = {}


def _pending(name: str, help_text: str, arrives_with: str) -> Command:
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def handler(_args: argparse.Namespace) -> int:
        print(f"syncwatch {name}: not available yet; it arrives with {arrives_with}.", file=sys.stderr)
        return 2

    return Command(name, f"{help_text} (not available yet)", add_arguments, handler)


PENDING_COMMANDS = tuple(_pending(name, *spec) for name, spec in PENDING.items())
