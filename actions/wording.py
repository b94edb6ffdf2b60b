"""How the action layer words a time window for people, in audit entries, log lines and the CLI."""

from __future__ import annotations

from datetime import timedelta


def span(window: timedelta) -> str:
    """A window as a person says it: "30 s", "10 min", "1 h"."""
    minutes = int(window.total_seconds() // 60)
    if minutes < 1:
        return f"{int(window.total_seconds())} s"
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"
