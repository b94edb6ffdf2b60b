"""`syncwatch retry|reroute|replay|resolve|ignore|reopen|assign|note EXC_ID --as USER`: act on one exception,
as a runbook would, with the same checks and audit as the dashboard; `--json` for scripts."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from syncwatch.commands.common import Command, add_common_options, config_from, open_store

HELP = {
    "retry": "send the failed request of an exception again (once, with an Idempotency-Key)",
    "reroute": "move an exception's fulfilment to an alternate warehouse or 3PL",
    "replay": "re-deliver an exception's dead-lettered message",
    "resolve": "mark an exception resolved, with a note",
    "ignore": "mark an exception ignored, with a note",
    "reopen": "open again an exception a person resolved or ignored, with a note",
    "assign": "assign an exception to a user",
    "note": "add a note to an exception's history (nothing else changes)",
}


def _arguments(action: str) -> Any:
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        add_common_options(parser)
        parser.add_argument("exception_id", metavar="EXC_ID", help="the exception's id")
        parser.add_argument("--as", dest="actor", required=True, metavar="USER", help="who acts (a [users] name)")
        if action == "note":
            parser.add_argument("--note", required=True, help="the note, for whoever works the exception next")
        else:
            parser.add_argument("--note", help="why (required for resolve, ignore and reopen)")
        if action == "reroute":
            parser.add_argument("--to", dest="target", required=True, metavar="SYSTEM", help="the alternate system")
        if action == "assign":
            parser.add_argument("--to", dest="target", required=True, metavar="USER", help="the assignee")
        if action == "retry":
            parser.add_argument(
                "--payload", type=_payload, metavar="JSON|@FILE", help="send this edited body (a JSON object) instead"
            )
        parser.add_argument("--json", action="store_true", help="print the result as one JSON object")

    return add_arguments


def _payload(text: str) -> dict[str, Any]:
    """The edited body, from the argument or from @FILE; argparse turns a ValueError into one line."""
    source = f"the file {text[1:]}" if text.startswith("@") else "the argument"
    try:
        raw = Path(text[1:]).read_text(encoding="utf-8") if text.startswith("@") else text
        body = json.loads(raw)
    except OSError as err:
        raise argparse.ArgumentTypeError(f"cannot read {text[1:]}: {err.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise argparse.ArgumentTypeError(f"{source} is not JSON ({err})") from None
    if not isinstance(body, dict):
        raise argparse.ArgumentTypeError(f"{source} is JSON but not an object: the body to send is {{...}}")
    return body


def _handler(action: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        from actions.api import perform
        from actions.services import close_all

        config = config_from(args)
        store = open_store(config)
        try:
            result = perform(
                store,
                config,
                action=action,
                exception_id=args.exception_id,
                actor=args.actor,
                note=args.note,
                payload=getattr(args, "payload", None),
                target=getattr(args, "target", None),
            )
        finally:
            close_all()
            store.close()
        print(json.dumps(asdict(result)) if args.json else result.message, file=sys.stdout if result.ok else sys.stderr)
        return 0 if result.ok else 1

    return run


COMMANDS = tuple(Command(name, text, _arguments(name), _handler(name)) for name, text in HELP.items())
