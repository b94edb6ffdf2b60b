"""`syncwatch demo`: everything on a fresh SQLite file in one command; Ctrl-C stops all it started.

The sample week is generated again, shifted so that it ends today (same seed, same shape as
sample_data/), because with the committed dates every open order would read as breached weeks ago.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from syncwatch.commands.common import Command, port, stop_on_signals
from syncwatch.commands.dashboard import streamlit_command, trusting_no_proxy
from syncwatch.config import Config, load_config

SEED, ORDERS_PER_DAY, DEMO_USER = 20261102, 720, "alex"
# Live orders arrive at the history's rate: faster, the open orders would pile up and read as an incident.
LIVE_ORDERS_PER_MINUTE = ORDERS_PER_DAY / (24 * 60)
READY_TIMEOUT_S = 60


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, help="folder for the database and generated files (default: a new one)")
    parser.add_argument("--port", type=port, default=4318, help="port of `serve` (default 4318)")
    parser.add_argument("--dashboard-port", type=port, default=8501, help="port of the dashboard (default 8501)")
    parser.add_argument(
        "--sim-base-port",
        type=port,
        default=8101,
        help="first of the simulator's seven ports: its six systems, then where outages are staged (8101)",
    )
    parser.add_argument(
        "--orders-per-minute",
        type=float,
        default=LIVE_ORDERS_PER_MINUTE,
        help=f"live orders per minute (default {LIVE_ORDERS_PER_MINUTE:g}, the history's rate)",
    )
    parser.add_argument("--profile", default="default", help="simulator fault profile (default: default)")


def week_start(today: datetime) -> datetime:
    """The Monday a week before this week's Monday: the sample week's weekday pattern, ending this week."""
    monday = today.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=today.weekday())
    return monday - timedelta(days=7)


def history_days(start: datetime, now: datetime) -> int:
    """Days from ``start`` through today: the history runs up to ``now`` (``--until``), so the
    live traffic takes over where it stops and nothing generated lies in the future."""
    return (now.replace(hour=0, minute=0, second=0, microsecond=0) - start).days + 1


@dataclass
class Processes:
    """The long-running children, stopped with SIGINT as Ctrl-C would: every other one first, and
    `serve` once they have exited, so the simulator's last spans still reach it."""

    running: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.running.append((name, subprocess.Popen(list(argv), env=env, start_new_session=True)))

    def dead(self) -> str | None:
        return next((name for name, p in self.running if p.poll() is not None), None)

    def stop(self) -> None:
        senders = [process for name, process in reversed(self.running) if name != "serve"]
        _stop(senders)
        _stop([process for name, process in self.running if name == "serve"])


def _stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def syncwatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "syncwatch", *args]


def _prepare(folder: Path, db: str, now: datetime, env: dict[str, str]) -> str:
    """A new database with the sample week (shifted to end now) ingested and correlated as of now."""
    start = week_start(now)
    days = history_days(start, now)
    out = history_folder(folder)
    generate = ("--generate", "--out", str(out), "--seed", str(SEED), "--days", str(days))
    shape = ("--orders-per-day", str(ORDERS_PER_DAY), "--start", start.date().isoformat())
    shape += ("--until", now.isoformat(timespec="seconds"))
    _step(env, "db", "upgrade", "--db", db)
    _step(env, "sim", *generate, *shape)
    from syncwatch.sim.generate import observed_files

    _step(env, "ingest", "--db", db, *observed_files(out))
    _step(env, "correlate", "--db", db)
    return (
        f"history generated from {start:%a %d %b} to now ({now:%a %d %b %H:%M} UTC) with the sample_data/ command "
        f"(seed {SEED}, {ORDERS_PER_DAY} orders a day, --start {start.date()} --days {days}), "
        "ingested and correlated; the live simulator numbers its documents after it"
    )


def history_folder(folder: Path) -> Path:
    return folder / "history"


def history_events(folder: Path) -> Path:
    from syncwatch.sim.generate import FILES

    return history_folder(folder) / FILES["events"]


def _step(env: dict[str, str], *args: str) -> None:
    subprocess.run(syncwatch(*args), check=True, stdout=subprocess.DEVNULL, env=env)


def partners_config(config: Config, base_port: int) -> str:
    """[partners] pointing at the simulator's ports, so actions reach the running network."""
    from syncwatch.sim.live import SYSTEMS

    blocks = []
    for index, system in enumerate(SYSTEMS):
        partner = config.file.partners.get(system)
        if partner is None:
            continue
        fields = partner.model_dump(exclude_none=True) | {"base_url": f"http://127.0.0.1:{base_port + index}"}
        lines = [f"{k} = {json.dumps(v)}" for k, v in fields.items()]
        blocks.append(f'[partners."{system}"]\n' + "\n".join(lines))
    return "\n\n".join(blocks) + "\n"


LIVE_LOGS = {"gateway.log": "combined", "edge.jsonl": "json_access"}  # what `sim --access-log-dir` writes


def live_access_logs(folder: Path) -> Path:
    """The folder the live simulator writes its gateway's access logs to, with the files already there,
    so `serve` tails them from its first pass: the demo shows all three kinds of input live, and the
    gateway, whose history came from the generated logs, keeps talking."""
    logs = folder / "live-logs"
    logs.mkdir(exist_ok=True)
    for name in LIVE_LOGS:
        (logs / name).touch()
    return logs


def tailers_config(logs: Path) -> str:
    """[[tailers]] for the live simulator's access logs (the system and field map are the defaults)."""
    return "".join(
        f'\n[[tailers]]\npath = {json.dumps(str(logs / name))}\nformat = "{fmt}"\n' for name, fmt in LIVE_LOGS.items()
    )


def _wait_ready(url: str, processes: Processes) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and processes.dead() is None:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return True
        except httpx.TransportError:
            time.sleep(0.3)
    return False


def demo_environment(args: argparse.Namespace, db: str, config_path: Path) -> dict[str, str]:
    """What every child gets: the demo's database, ports and config; alert links point at the demo's
    dashboard port unless SYNCWATCH_DASHBOARD_URL says where people reach it."""
    return {
        "SYNCWATCH_DASHBOARD_URL": f"http://127.0.0.1:{args.dashboard_port}",
        **os.environ,
        "SYNCWATCH_DB": db,
        "SYNCWATCH_PORT": str(args.port),
        "SYNCWATCH_DASHBOARD_PORT": str(args.dashboard_port),
        "SYNCWATCH_CONFIG": str(config_path),
    }


def sim_arguments(args: argparse.Namespace, folder: Path, logs: Path) -> list[str]:
    """The live simulator's command line: it goes on from the history, sending to `serve`."""
    otlp = f"http://127.0.0.1:{args.port}"
    sim = ["sim", "--base-port", str(args.sim_base_port), "--otlp-endpoint", otlp, "--events-url", f"{otlp}/v1/events"]
    sim += ["--access-log-dir", str(logs)]
    sim += ["--orders-per-minute", str(args.orders_per_minute), "--profile", args.profile, "--seed", str(SEED)]
    sim += ["--continue-after", str(history_folder(folder))]  # a live order must never take a history order's ids
    sim += ["--dead-letters-from", str(history_events(folder))]  # a Replay of the history's exceptions finds them
    return sim


def _start(
    args: argparse.Namespace, folder: Path, db: str, env: dict[str, str], logs: Path, processes: Processes
) -> str:
    processes.start("serve", syncwatch("serve", "--db", db, "--port", str(args.port)), env)
    processes.start("sim", syncwatch(*sim_arguments(args, folder, logs)), env)
    # With a users file configured the demo asks for a sign-in; without one it signs everyone in as a lead.
    signed_in = {} if os.environ.get("SYNCWATCH_DASHBOARD_USERS") else {"SYNCWATCH_DASHBOARD_DEMO_USER": DEMO_USER}
    dashboard_env = trusting_no_proxy({**env, **signed_in})
    processes.start("dashboard", streamlit_command(args.dashboard_port), dashboard_env)
    url = f"http://127.0.0.1:{args.dashboard_port}"
    if not _wait_ready(f"{url}/_stcore/health", processes):
        raise RuntimeError(f"the {processes.dead() or 'dashboard'} did not start; see the messages above")
    return url


def outage_help(base_port: int) -> str:
    """How to stage the bad day the dashboard is for: a 3PL down, its orders failing to hand over."""
    from syncwatch.sim.outage import MODES, PARTNERS, command

    modes = " or ".join(mode for mode in MODES if mode not in ("down", "up"))
    return (
        f"to stage a partner outage from another terminal: {command('3pl-fastship', 'down', base_port)} "
        f"(or {modes}, for any of {', '.join(PARTNERS)}; the ERP is the business's own, not staged); orders "
        "reach their 3PL minutes after capture, so its failures show some minutes in (sooner with more "
        f"--orders-per-minute); end it with: {command('3pl-fastship', 'up', base_port)}"
    )


def _run(args: argparse.Namespace) -> int:
    stop_on_signals()
    config = load_config()  # a broken SYNCWATCH_CONFIG is reported before anything starts
    folder = args.dir or Path(tempfile.mkdtemp(prefix="syncwatch-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{folder / 'demo.db'}"
    config_path = folder / "demo.toml"
    logs = live_access_logs(folder)
    config_path.write_text(partners_config(config, args.sim_base_port) + tailers_config(logs), encoding="utf-8")
    print(f"syncwatch demo: preparing {db} …", file=sys.stderr)
    env = demo_environment(args, db, config_path)
    what = _prepare(folder, db, datetime.now(UTC), env)
    processes = Processes()
    try:
        url = _start(args, folder, db, env, logs, processes)
        print(f"syncwatch demo: {what}.")
        who = (
            "sign in with the users file"
            if os.environ.get("SYNCWATCH_DASHBOARD_USERS")
            else f"signed in as {DEMO_USER}"
        )
        print(
            f"syncwatch demo: serve on http://127.0.0.1:{args.port}, simulator on ports {args.sim_base_port}-"
            f"{args.sim_base_port + 5} with the '{args.profile}' fault profile; {who}."
        )
        print(
            f"syncwatch demo: to act from another terminal, give the CLI the demo's database and partners: "
            f"SYNCWATCH_DB={db} SYNCWATCH_CONFIG={config_path} syncwatch retry EXCEPTION_ID --as {DEMO_USER}"
        )
        print(f"syncwatch demo: {outage_help(args.sim_base_port)}")
        print(f"syncwatch demo: dashboard at {url}  — Ctrl-C stops everything.", flush=True)
        while (dead := processes.dead()) is None:
            time.sleep(0.5)
        print(f"syncwatch demo: {dead} stopped; stopping the rest.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nsyncwatch demo: stopping …", file=sys.stderr)
        return 0
    except RuntimeError as err:
        print(f"syncwatch demo: {err}", file=sys.stderr)
        return 1
    finally:
        processes.stop()


COMMAND = Command("demo", "start everything on a fresh SQLite file with the sample data", _add_arguments, _run)
