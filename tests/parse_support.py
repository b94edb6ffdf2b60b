"""A parser for pool tests: it tells which process ran it, and in a worker it waits for a flag the
caller's own parse sets, so a test can hold the workers busy for exactly as long as it needs."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

from collectors.base import ParseContext, Parsed


def flagged(index: int, flag: str, _ctx: ParseContext) -> Parsed:
    """Parsed with one row, (index, pid); in a worker, only once ``flag`` exists (10 s at most)."""
    if multiprocessing.parent_process() is None:
        Path(flag).touch()
    else:
        deadline = time.monotonic() + 10
        while not Path(flag).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    return Parsed(rows=[(index, os.getpid())])
