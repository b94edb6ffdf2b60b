"""The CLI as a user runs it: a fresh ``python -m syncwatch`` process without the caller's
SYNCWATCH_* settings, output captured as text."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def syncwatch(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SYNCWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "syncwatch", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **(env or {})},
        cwd=cwd,
    )
