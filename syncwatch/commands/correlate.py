"""`syncwatch correlate`: one correlator pass over everything stored since the last one."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, TextIO

from syncwatch.commands.common import Command, add_common_options, config_from, iso_time, open_store
from syncwatch.model import count, utcnow

if TYPE_CHECKING:
    from correlator.passes import Correlator, PassResult


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_options(parser)
    parser.add_argument(
        "--now",
        type=iso_time,
        help="evaluate SLAs as of this ISO-8601 time (default: now); "
        "for replaying historical data such as sample_data/",
    )
    parser.add_argument(
        "--batch",
        type=int,
        help="observations per database transaction (default: the whole backlog, up to the correlator's limit)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def _run(args: argparse.Namespace) -> int:
    from correlator.passes import BACKLOG, Correlator, PassResult

    config = config_from(args)
    store = open_store(config)
    now = args.now
    shown = _Shown(sys.stderr) if sys.stderr.isatty() else None
    try:
        correlator = Correlator(store, config, clock=(lambda: now) if now else utcnow)
        try:
            result = correlator.run_pass(args.batch or BACKLOG, shown)
        finally:
            if shown is not None:
                shown.end()
        timed = PassResult()
        rechecked = 0 if result.busy else _reevaluate(correlator, timed)
    finally:
        store.close()
    summary = {
        "observations": result.observations,
        "transactions": result.transactions,
        "sla_reevaluated": rechecked,
        "exceptions": result.exceptions + timed.exceptions,
        "alerts": result.alerts + timed.alerts,
        "refused_links": result.refused_links,
        "conflicts": result.conflicts,
        "busy": result.busy,
        "seconds": round(result.seconds, 3),
    }
    print(json.dumps(summary) if args.json else "\n".join(_sentences(result, rechecked, timed)))
    return 0


class _Shown:
    """How far a pass has come, on a terminal: one line per step (of each batch, with ``--batch``),
    rewritten at most ten times a second. A large backlog takes a minute or more, which without it
    passed in silence. On stderr, so ``--json`` output stays one object on stdout."""

    def __init__(self, out: TextIO) -> None:
        from correlator.passes import DERIVING, LINKING, READING, SAVING

        self.words = {
            READING: "reading the new observations: {share}",
            LINKING: "linking {of:,} observations into transactions…",
            DERIVING: "deriving {of:,} transactions: {share}",
            SAVING: "saving the exceptions and alerts found, then committing…",
        }
        self.out = out
        self.step: str | None = None
        self.shown_at = 0.0

    def __call__(self, step: str, done: int, of: int) -> None:
        now = time.monotonic()
        if step == self.step and done < of and now - self.shown_at < 0.1:
            return
        if self.step is not None and step != self.step:
            print(file=self.out)
        self.step, self.shown_at = step, now
        share = f"{min(100, done * 100 // max(1, of))}%"
        words = self.words.get(step, "{step}: {share}").format(step=step, of=of, share=share)
        print(f"\r{words}", end="", file=self.out, flush=True)

    def end(self) -> None:
        """The last step's line ends, so the summary starts a line of its own."""
        if self.step is not None:
            print(file=self.out, flush=True)


RECHECK_AT_ONCE = 10_000
MAX_RECHECKS = 1_000  # rounds of RECHECK_AT_ONCE: a bound, should a check time ever stay in the past


def _reevaluate(correlator: Correlator, result: PassResult) -> int:
    """Re-derive the transactions whose SLA changed with time alone since they were last derived,
    as `serve` does every few seconds: without it, a batch run's on-track orders long past their due
    stayed on track."""
    done = 0
    for _ in range(MAX_RECHECKS):
        found = correlator.reevaluate(RECHECK_AT_ONCE, result)
        done += found
        if found < RECHECK_AT_ONCE:
            break
    return done


def _sentences(result: PassResult, rechecked: int, timed: PassResult) -> list[str]:
    """The pass in words: what it read, what it recomputed, and anything to look into."""
    if result.busy:
        return ["another syncwatch process is correlating this database right now; this pass did nothing"]
    moved = [
        f"{count(rechecked, 'transaction')} re-evaluated as time passed (SLA due times reached): "
        f"{count(timed.exceptions, 'exception')} derived, {count(timed.alerts, 'alert')} raised"
    ] * bool(rechecked)
    if not result.observations and not result.transactions:
        return [*moved] if rechecked else [f"nothing new to correlate ({result.seconds:.1f} s)"]
    lines = [
        f"correlated {count(result.observations, 'new observation')} in {result.seconds:.1f} s: "
        f"{count(result.transactions, 'transaction')} recomputed, {count(result.exceptions, 'exception')} "
        f"derived, {count(result.alerts, 'alert')} raised"
    ]
    if result.refused_links:
        lines.append(
            f"{count(result.refused_links, 'link')} refused: each would have merged two transactions that have "
            "their own identifying keys (a trace or an attribute shared by two orders)"
        )
        lines.extend(f"  {conflict}" for conflict in result.conflicts)
    return [*lines, *moved]


COMMAND = Command(
    "correlate", "run one correlator pass: link, stage, evaluate SLAs, derive exceptions", _add_arguments, _run
)
