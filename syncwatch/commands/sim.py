"""`syncwatch sim`: fast-forward the simulated distribution network into files (--generate)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from syncwatch.commands.common import Command
from syncwatch.sim.clock import DEFAULT_START
from syncwatch.sim.faults import FAULTS, PROFILES, FaultSpecError, build_profile
from syncwatch.sim.generate import Plan, generate


def add_generate_options(parser: argparse.ArgumentParser) -> None:
    """The options that decide what is generated; the benchmark shares them."""
    parser.add_argument("--days", type=int, default=7, help="days of traffic (default 7)")
    parser.add_argument("--orders-per-day", type=int, default=280, help="orders per day (default 280)")
    parser.add_argument("--seed", type=int, default=1, help="random seed: same seed, same bytes (default 1)")
    parser.add_argument(
        "--start", type=_date, default=DEFAULT_START, help="first day, UTC (default 2026-11-02, a Monday)"
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
    return Plan(args.days, args.orders_per_day, args.seed, args.start, profile)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--generate", action="store_true", help="write the traffic to files instead of serving it")
    parser.add_argument("--out", type=Path, help="folder to write into (with --generate)")
    add_generate_options(parser)


def _run(args: argparse.Namespace) -> int:
    if not args.generate:
        print("syncwatch sim: live mode is not available yet; use --generate --out DIR.", file=sys.stderr)
        return 2
    if args.out is None:
        print("syncwatch sim: --generate needs --out DIR.", file=sys.stderr)
        return 2
    try:
        plan = plan_from(args)
    except FaultSpecError as err:
        print(f"syncwatch sim: {err}", file=sys.stderr)
        return 2
    summary = generate(plan, args.out)
    print(json.dumps({**summary.counts, "faults": summary.faults}))
    return 0


COMMAND = Command("sim", "run or fast-forward the simulated distribution network", _add_arguments, _run)
