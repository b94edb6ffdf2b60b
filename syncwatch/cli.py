"""The `syncwatch` command: one sub-command per module in ``syncwatch.commands``.

Errors a person can fix (a broken config, an unreachable database) are printed as one
sentence with a non-zero exit code; a traceback is reserved for bugs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from syncwatch import __version__
from syncwatch.commands import COMMANDS
from syncwatch.config import ConfigError
from syncwatch.store import StoreError

EXIT_USAGE = 2


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The full parser of the command named in ``argv``, and name and help of the others."""
    words = [word for word in (sys.argv[1:] if argv is None else argv) if not word.startswith("-")]
    parser = argparse.ArgumentParser(
        prog="syncwatch",
        description="Observability and exception management for the syncs of a distribution business.",
    )
    parser.add_argument("--version", action="version", version=f"syncwatch {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers, chosen=bool(words) and words[0] == command.name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "apscheduler", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as err:
        print(f"syncwatch: config error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as err:
        print(f"syncwatch: database error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`syncwatch export … | head`): stop quietly, like other Unix tools.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
