"""The settings table: every tunable with its default and help, documented in the README.

Precedence, highest first: command-line flag → ``SYNCWATCH_*`` environment variable →
``[settings]`` in the config file → default. A test fails when a setting is missing from the
README, so this table and the documentation cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    limits: tuple[float, float] | None = None  # the lowest and highest values that make sense

    @property
    def env(self) -> str:
        return f"SYNCWATCH_{self.name.upper()}"

    @property
    def type(self) -> type:
        return type(self.default)


PORTS = (1, 65535)

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "db",
        "sqlite:///syncwatch.db",
        "Database URL: sqlite:///PATH (default, in the working directory) or postgresql://USER@HOST:PORT/DB",
    ),
    Setting("host", "127.0.0.1", "Address `serve` listens on for OTLP/HTTP and events"),
    Setting("port", 4318, "Port `serve` listens on (4318 is the OTLP/HTTP standard port)", limits=PORTS),
    Setting("dashboard_port", 8501, "Port of the Streamlit dashboard", limits=PORTS),
    Setting("dashboard_url", "http://127.0.0.1:8501", "Public address of the dashboard, used in alert links"),
    Setting(
        "dashboard_users",
        "",
        "File of dashboard sign-ins (salted password hashes, made by `syncwatch dashboard --add-user`); "
        "roles come from [users]",
    ),
    Setting(
        "dashboard_demo_user",
        "",
        "Sign every visitor in as this [users] name, with a role switcher; only for `syncwatch demo`",
    ),
    Setting(
        "max_request_bytes",
        16 * 1024 * 1024,
        "Largest request body `serve` accepts (decompressed); larger ones get 413",
    ),
    Setting("quarantine_raw_limit", 64 * 1024, "Bytes of each rejected input kept in quarantine"),
    Setting("tail_interval_s", 1.0, "Seconds between file-tailer passes", limits=(0.05, 3600)),
    Setting("correlate_interval_s", 5.0, "Seconds between correlator passes inside `serve`", limits=(0.05, 3600)),
    Setting(
        "correlate_processes",
        0,
        "Processes deriving the transactions of a large correlator pass (20,000 or more) outside `serve`: "
        "0 is one per CPU core (within the container's quota), at most 4; 1 forks none",
        limits=(0, 64),
    ),
    Setting(
        "alert_quiet_period_s",
        1800,
        "Seconds before a still-failing partner endpoint, or a correlator still behind, is alerted again",
    ),
    Setting(
        "retention_days",
        90,
        "Days of history kept: older observations, transactions not seen since, quarantine and alerts are pruned "
        "by `serve` every 6 hours (`syncwatch db prune` prunes now); 0 keeps everything. The audit log is always kept",
        limits=(0, 36_500),
    ),
    Setting(
        "sla_at_risk_share", 0.8, "Share of a stage's SLA budget used before it counts as at risk", limits=(0.0, 1.0)
    ),
    Setting(
        "alert_webhook_env",
        "SYNCWATCH_ALERT_WEBHOOK",
        "Name of the environment variable holding the "
        "alert webhook URL (the URL is a secret, so it never sits in the config file)",
    ),
    Setting(
        "log_level",
        "info",
        "Logging level: debug, info, warning or error",
        choices=("debug", "info", "warning", "error"),
    ),
)

BY_NAME = {s.name: s for s in SETTINGS}


def coerce(setting: Setting, raw: Any, origin: str) -> Any:
    """Convert a raw value (text from the environment, TOML value) to the setting's type."""
    kind = setting.type
    if setting.choices and isinstance(raw, str):
        raw = raw.lower()  # DEBUG as well as debug
    if setting.choices and raw not in setting.choices:
        raise ValueError(f"{origin}: expected one of {', '.join(setting.choices)}, got {raw!r}")
    value = _typed(kind, raw)
    if value is None:
        expected = {int: "a whole number", float: "a number", str: "text"}[kind]
        raise ValueError(f"{origin}: expected {expected}, got {raw!r}")
    if setting.limits and not setting.limits[0] <= value <= setting.limits[1]:
        low, high = setting.limits
        raise ValueError(f"{origin}: expected {low:g} to {high:g}, got {raw!r}")
    return value


def _typed(kind: type, raw: Any) -> Any:
    if isinstance(raw, kind) and not (kind is int and isinstance(raw, bool)):
        return raw
    try:
        if kind is float and isinstance(raw, int | str) and not isinstance(raw, bool):
            return float(raw)
        if kind is int and isinstance(raw, str):
            return int(raw)
    except ValueError:
        pass
    return None
