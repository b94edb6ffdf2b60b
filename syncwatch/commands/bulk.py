"""`syncwatch bulk ACTION --as LEAD [filters]`: one action over every exception a filter matches,
as the Exceptions page's bulk panel does. Without --yes it only prints the plan (how many, which
partners); with --yes it runs the job within the partners' rate limits and shows its progress.
Ctrl-C or SIGTERM cancels the job between items; a job whose process was killed outright is closed
by `serve` (or the next bulk command) once it has made no progress for ten minutes."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any

from syncwatch.commands.common import Command, add_common_options, config_from, interrupt, open_store
from syncwatch.model import count as plural
from syncwatch.store.filters import QueueFilter

EXIT_USAGE = 2
LIST_FILTERS = ("status", "category", "system", "partner", "channel", "sla_state")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from actions.bulk import BULK_ACTIONS

    add_common_options(parser)
    parser.add_argument("action", choices=BULK_ACTIONS, help="what to do to each exception")
    parser.add_argument("--as", dest="actor", required=True, metavar="USER", help="who acts (a lead)")
    parser.add_argument(
        "--to", dest="target", metavar="NAME", help="the assignee (assign) or the warehouse or 3PL to move to (reroute)"
    )
    parser.add_argument("--note", help="why (recorded with every item; required for resolve and ignore)")
    parser.add_argument("--yes", action="store_true", help="run the plan (without it, only print the plan)")
    parser.add_argument("--json", action="store_true", help="print the plan or the finished job as JSON")
    which = parser.add_argument_group("which exceptions (default: every open or retrying one)")
    for name in LIST_FILTERS:
        flag, helps = f"--{name.replace('_', '-')}", f"{name.replace('_', ' ')} is VALUE (repeat for several)"
        which.add_argument(flag, dest=name, action="append", metavar="VALUE", help=helps)
    which.add_argument("--assignee", help="assigned to USER ('' for unassigned)")
    which.add_argument("--key", help="of the transaction carrying this business key")
    which.add_argument("--opened-after", metavar="ISO", help="opened at or after this time")
    which.add_argument("--opened-before", metavar="ISO", help="opened before this time")
    which.add_argument("--ids", help="only these exception ids (comma-separated)")


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    given = {name: getattr(args, name) for name in (*LIST_FILTERS, "assignee", "key", "opened_after", "opened_before")}
    filters = QueueFilter.from_mapping({k: v for k, v in given.items() if v is not None}).as_mapping()
    return filters | ({"ids": args.ids.split(",")} if args.ids else {})


def _run(args: argparse.Namespace) -> int:
    from actions import roles
    from actions.api import plan_bulk, refuse_bulk
    from actions.jobs import STALLED_AFTER, close_stalled_jobs
    from actions.services import close_all, services_for
    from actions.wording import span

    config = config_from(args)
    if not roles.may(config, args.actor, "bulk"):  # say so before asking for more, or planning what could not run
        reason = f"only a lead may run bulk jobs, and {args.actor} is {roles.described(config, args.actor)}"
        store = open_store(config)
        try:
            refuse_bulk(store, config, action=args.action, filters=_filters(args), actor=args.actor, reason=reason)
        finally:
            store.close()
        print(f"syncwatch bulk: {reason}.", file=sys.stderr)
        return 1
    if args.action in ("resolve", "ignore") and not (args.note or "").strip():
        print(f"syncwatch bulk: {args.action} needs --note (why, for the audit log).", file=sys.stderr)
        return EXIT_USAGE
    if args.target and args.action not in ("assign", "reroute"):
        print(
            f"syncwatch bulk: --to names an assignee or a partner to reroute to; {args.action} takes none.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.action == "reroute" and not args.target:
        print("syncwatch bulk: reroute needs --to, the warehouse or 3PL to move the orders to.", file=sys.stderr)
        return EXIT_USAGE
    store = open_store(config)
    try:
        for job_id in close_stalled_jobs(services_for(store, config)):
            print(f"syncwatch bulk: job {job_id} made no progress in {span(STALLED_AFTER)}; closed.", file=sys.stderr)
        try:
            plan = plan_bulk(
                store, config, action=args.action, filters=_filters(args), actor=args.actor, target=args.target
            )
        except ValueError as err:
            print(f"syncwatch bulk: {err}.", file=sys.stderr)
            return EXIT_USAGE
        if not args.yes or plan.count == 0:
            print(json.dumps(_plan_json(plan)) if args.json else _plan_text(plan, _unknown_names(args, config)))
            return 0
        return _execute(store, config, plan, args)
    finally:
        close_all()
        store.close()


def _plan_json(plan: Any) -> dict[str, Any]:
    return {
        "action": plan.action,
        "count": plan.count,
        "partners": plan.partners,
        "suggested": plan.suggested,
        "categories": plan.categories,
        "breached": plan.breached,
        "caveat": plan.caveat,
        "left_out": plan.left_out,
        "target": plan.target,
        "filters": plan.filters,
    }


def _plan_text(plan: Any, unknown: list[str]) -> str:
    to = f" to {plan.target}" if plan.target else ""
    lines = [f"Plan: {plan.action} {plural(plan.count, 'exception')}{to}."]
    lines += [t for t in (plan.makeup, plan.left_out_text, plan.caveat) if t]
    lines += [f"  {partner}: {count}" for partner, count in sorted(plan.partners.items(), key=lambda i: -i[1])]
    lines.append("Run again with --yes to start." if plan.count else "Nothing matches; nothing to do.")
    if not plan.count:
        lines += unknown
    return "\n".join(lines)


def _unknown_names(args: argparse.Namespace, config: Any) -> list[str]:
    """Why a filter may match nothing: a channel or partner the config does not know (names are exact)."""
    from syncwatch.model import partners_of_kind

    partners = config.file.partners
    known = {"channel": partners_of_kind(partners, "marketplace"), "partner": partners_of_kind(partners, "wms", "3pl")}
    said = []
    for name, names in known.items():
        for value in getattr(args, name) or []:
            if value not in names:
                said.append(f"No {name} is called {value!r}; the config's are: {', '.join(names) or 'none'}.")
    return said


def _execute(store: Any, config: Any, plan: Any, args: argparse.Namespace) -> int:
    from dataclasses import replace

    from actions.api import bulk_failure_reasons, bulk_status, cancel_bulk, start_bulk
    from actions.bulk import Refused
    from syncwatch.redact import mask_emails

    try:
        job_id = start_bulk(store, config, replace(plan, note=args.note), args.actor)
    except Refused as err:
        print(f"syncwatch bulk: {err}", file=sys.stderr)
        return 1
    print(f"Job {job_id}: {plan.action} on {plural(plan.count, 'exception')} (Ctrl-C cancels).", file=sys.stderr)
    status, shown = bulk_status(store, job_id), -1
    previous = signal.signal(signal.SIGTERM, interrupt)  # a stop from outside cancels as Ctrl-C does
    try:
        while status["status"] not in ("finished", "cancelled"):
            try:
                time.sleep(1)
            except KeyboardInterrupt:
                print(cancel_bulk(store, job_id, args.actor, config).message, file=sys.stderr)
            status = bulk_status(store, job_id)
            if status["done"] != shown:
                shown = status["done"]
                found = f", {status['skipped']} already done" if status["skipped"] else ""
                print(f"  {shown} of {status['total']} done, {status['failed']} failed{found}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, previous)
    summary = f"Job {job_id} {status['status']}: {status['succeeded']} succeeded, {status['failed']} failed"
    summary += _skipped_text(status) + "."
    reasons = bulk_failure_reasons(store, job_id) if status["failed"] else []
    why = "".join(f"\n  {n} × {mask_emails(reason)}" for reason, n in reasons[:5])
    print(json.dumps(status) if args.json else summary + (f"\nWhy they failed:{why}" if why else ""))
    return 0 if status["status"] == "finished" and not status["failed"] else 1


def _skipped_text(status: dict[str, Any]) -> str:
    """', 2 already done (1 already retried, 1 already resolved)': items the job found done, not done by it."""
    if not status["skipped"]:
        return ""
    why = ", ".join(f"{n} {reason}" for reason, n in status["skipped_reasons"].items())
    return f", {status['skipped']} already done" + (f" ({why})" if why else "")


COMMAND = Command("bulk", "run one action on every exception a filter matches (plan first)", _add_arguments, _run)
