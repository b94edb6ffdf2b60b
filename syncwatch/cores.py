"""How many cores this process may use: its CPU affinity, and its container's CPU quota.

Helper processes and parse workers beyond that only take turns on the same cores, and in a
container the affinity alone counts the host's cores, not the ones the quota grants.
"""

from __future__ import annotations

import os
from pathlib import Path

CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # a container's CPU quota (cgroup v2): "max 100000" or "200000 100000"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), within its container's quota; at least one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, _quota_cores() or cores))


def _quota_cores() -> int | None:
    """Whole cores the container's quota allows, at least one (half a core is one, not none)."""
    try:
        quota, period = CPU_MAX.read_text().split()
        return None if quota == "max" else max(1, int(quota) // int(period))
    except (OSError, ValueError):
        return None
