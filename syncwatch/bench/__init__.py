"""Benchmarks: each measures one capability and returns named figures with their units.

A benchmark module offers ``BENCHMARK``; figures are a flat dict whose keys end in their unit
(``observations_per_s``, ``p95_ms``), so `--json` output can be tracked over time.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

Figures = dict[str, float | int | str]


@dataclass(frozen=True)
class Benchmark:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Figures]


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile; ``share`` in [0, 1]."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]
