"""`syncwatch sim`: run the simulated distribution network live, or fast-forward it into files."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from syncwatch.commands.common import Command, iso_time, port
from syncwatch.sim.clock import DEFAULT_START
from syncwatch.sim.faults import FAULTS, PROFILES, FaultProfile, FaultSpecError, build_profile
from syncwatch.sim.generate import Plan, generate


def add_generate_options(parser: argparse.ArgumentParser) -> None:
    """The options that decide what is generated; the benchmark shares them."""
    parser.add_argument("--days", type=int, default=7, help="days of traffic (default 7)")
    parser.add_argument("--orders-per-day", type=int, default=280, help="orders per day (default 280)")
    parser.add_argument(
        "--seed",
        type=int,
        default=1,
        help="random seed: same seed, same bytes (default 1); another seed numbers its documents (SO-…, PO-…) "
        "the same way, so put one generated week in a database and continue it live with --continue-after",
    )
    parser.add_argument(
        "--start", type=_date, default=DEFAULT_START, help="first day, UTC (default 2026-11-02, a Monday)"
    )
    parser.add_argument(
        "--until",
        type=iso_time,
        metavar="TIME",
        help="stop the traffic at this time within the last day, UTC (e.g. 2026-11-08T16:30); default: its end",
    )
    parser.add_argument(
        "--profile",
        action="append",
        choices=sorted(PROFILES),
        help="fault profile; repeat to combine, later ones win per fault (default: default)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME=RATE",
        help=f"share of orders given a fault, or a category's share split over its faults ({', '.join(FAULTS)})",
    )


def _date(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-02") from None


def plan_from(args: argparse.Namespace) -> Plan:
    profile = build_profile(args.profile or ["default"], args.fault)
    return Plan(args.days, args.orders_per_day, args.seed, args.start, profile, args.until)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generate", action="store_true", help="write the traffic to files instead of serving it")
    parser.add_argument("--out", type=Path, help="folder to write into (with --generate)")
    add_generate_options(parser)
    live = parser.add_argument_group("live mode (without --generate)")
    live.add_argument("--host", default="127.0.0.1", help="address the services listen on (default 127.0.0.1)")
    live.add_argument("--base-port", type=port, default=8101, help="first of six ports, one a system (default 8101)")
    live.add_argument("--otlp-endpoint", metavar="URL", help="OTLP/HTTP base URL for spans, e.g. http://127.0.0.1:4318")
    live.add_argument("--events-url", metavar="URL", help="where CloudEvents are POSTed (structured JSON)")
    live.add_argument("--access-log-dir", type=Path, metavar="DIR", help="write gateway.log and edge.jsonl here")
    live.add_argument("--orders-per-minute", type=float, default=6.0, help="orders started per minute (default 6)")
    live.add_argument(
        "--instant",
        action="store_true",
        help="run each order through at once, instead of hours apart as the generated history spaces its hops",
    )
    live.add_argument(
        "--continue-after",
        type=Path,
        metavar="DIR",
        help="a folder written by --generate: live orders, shipments and invoices are numbered after its ids, "
        "and the orders its --until cut off go on live, each step at its planned time",
    )
    live.add_argument(
        "--dead-letters-from",
        type=Path,
        metavar="FILE",
        help="a CloudEvents file of a generated history (its events/events.jsonl): the ERP starts with the "
        "shipment notices it dead-lettered, so they can be replayed, and a replay confirms and invoices the order",
    )
    _add_outage(parser)


def _add_outage(parser: argparse.ArgumentParser) -> None:
    """`sim outage`: a sub-command of `sim` because it acts on a running simulator, found by its base port."""
    from syncwatch.sim.outage import MODES, PARTNERS

    commands = parser.add_subparsers(dest="sim_command", metavar="outage", required=False)
    what = "take a partner of the running simulator (or demo) down, or bring it back up"
    outage = commands.add_parser("outage", help=what, description=what + ".")
    outage.add_argument("partner", help=f"one of {', '.join(PARTNERS)}")
    outage.add_argument("mode", help="; ".join(f"{mode}: it {does}" for mode, does in MODES.items()))
    outage.add_argument(
        "--base-port",
        type=port,
        default=8101,
        help="the simulator's --base-port (the demo's --sim-base-port; default 8101): "
        "outages are staged on 127.0.0.1 at that port + 6",
    )


def _outage(args: argparse.Namespace) -> int:
    import httpx

    from syncwatch.sim.outage import HOST, MODES, PATH, admin_port, command, problem

    error = problem(args.partner, args.mode)
    if error is not None:
        print(f"syncwatch sim outage: {error}", file=sys.stderr)
        return 2
    address = f"{HOST}:{admin_port(args.base_port)}"
    try:
        answer = httpx.post(f"http://{address}{PATH}", json={"partner": args.partner, "mode": args.mode}, timeout=10)
    except httpx.TransportError:
        print(
            f"syncwatch sim outage: nothing answers at {address}; is `syncwatch sim` or `syncwatch demo` running "
            f"with base port {args.base_port}? (--base-port here is the simulator's, the demo's --sim-base-port)",
            file=sys.stderr,
        )
        return 1
    if answer.status_code == 400:
        print(f"syncwatch sim outage: {answer.json()['error']}", file=sys.stderr)
        return 2
    answer.raise_for_status()
    until = "" if args.mode == "up" else f", until `{command(args.partner, 'up', args.base_port)}`"
    print(f"syncwatch sim: {args.partner} {MODES[args.mode]}{until}.")
    return 0


def _run(args: argparse.Namespace) -> int:
    if getattr(args, "sim_command", None) == "outage":
        return _outage(args)
    try:
        profile = plan_from(args).profile
    except FaultSpecError as err:
        print(f"syncwatch sim: {err}", file=sys.stderr)
        return 2
    if not args.generate:
        return _live(args, profile)
    if args.out is None:
        print("syncwatch sim: --generate needs --out DIR.", file=sys.stderr)
        return 2
    plan = plan_from(args)
    if plan.until is not None and plan.until <= plan.start:
        print(
            f"syncwatch sim: --until {plan.until:%Y-%m-%d %H:%M} is before --start: nothing to generate.",
            file=sys.stderr,
        )
        return 2
    summary = generate(plan, args.out)
    print(json.dumps({**summary.counts, "faults": summary.faults}))
    return 0


def _live(args: argparse.Namespace, profile: FaultProfile) -> int:
    from syncwatch.sim.driver import LiveOptions, run_live
    from syncwatch.sim.generate import FILES, IN_FLIGHT
    from syncwatch.sim.history import HeldLetter, InFlight, held_letters, in_flight
    from syncwatch.sim.outage import HOST, admin_port

    truth = args.continue_after / FILES["truth"] if args.continue_after else None
    if truth is not None and not truth.is_file():
        print(
            f"syncwatch sim: {args.continue_after} holds no {FILES['truth']}: is it a --generate folder?",
            file=sys.stderr,
        )
        return 2
    carried: tuple[InFlight, ...] = ()
    if args.continue_after is not None:
        try:  # the orders its --until cut off: the live network carries them on
            carried = tuple(in_flight(args.continue_after / IN_FLIGHT))
        except ValueError as err:
            print(f"syncwatch sim: cannot take over {args.continue_after / IN_FLIGHT}: {err}.", file=sys.stderr)
            return 2
    held: tuple[HeldLetter, ...] = ()
    if args.dead_letters_from is not None:
        if not args.dead_letters_from.is_file():
            print(
                f"syncwatch sim: there is no file {args.dead_letters_from} to take dead letters from.", file=sys.stderr
            )
            return 2
        try:  # read before the services start: a bad file stops here, not in their first second
            held = tuple(held_letters(args.dead_letters_from))
        except ValueError as err:
            print(f"syncwatch sim: cannot take dead letters from {args.dead_letters_from}: {err}.", file=sys.stderr)
            return 2
    options = LiveOptions(
        args.host,
        args.base_port,
        args.otlp_endpoint,
        args.events_url,
        args.access_log_dir,
        args.orders_per_minute,
        args.seed,
        truth,
        held,
        carried,
        real_time=not args.instant,
        admin_port=admin_port(args.base_port),
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the console
    print(
        f"syncwatch sim: serving on {args.host}:{args.base_port}-{args.base_port + 5}, outages staged on "
        f"{HOST}:{admin_port(args.base_port)} (`syncwatch sim outage PARTNER down|up`); Ctrl-C stops",
        file=sys.stderr,
    )
    asyncio.run(run_live(options, profile))
    return 0


COMMAND = Command("sim", "run or fast-forward the simulated distribution network", _add_arguments, _run)
