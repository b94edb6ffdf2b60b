"""`syncwatch dashboard`: the Streamlit app on this machine, with the database and config passed through.

``--add-user NAME`` instead adds a local sign-in (a salted scrypt hash) to the users file, for
installations without an OIDC provider.
"""

from __future__ import annotations

import argparse
import getpass
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

from dashboard.users import add_user
from syncwatch.commands.common import Command, add_common_options, config_from, stop_on_signals
from syncwatch.config import Config
from syncwatch.store.engine import describe, parse_url

ADDRESS = "127.0.0.1"


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common_options(parser)
    parser.add_argument("--port", type=int, help="port to serve on (default: setting dashboard_port, 8501)")
    parser.add_argument("--address", default=ADDRESS, help=f"address to listen on (default {ADDRESS})")
    parser.add_argument("--users-file", help="local sign-ins file (default: setting dashboard_users)")
    parser.add_argument("--add-user", metavar="NAME", help="add or replace a local sign-in (asks for the password)")


def app_path() -> Path:
    return Path(str(resources.files("dashboard").joinpath("app.py")))


def streamlit_command(port: int, address: str = ADDRESS) -> list[str]:
    """`streamlit run` on the packaged app: headless, no file watcher, no usage statistics, and a
    failure shown to the person as its kind and a plain sentence: its message and traceback (file
    paths, perhaps data) go to the console, for whoever runs the dashboard."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path()),
        "--server.port",
        str(port),
        "--server.address",
        address,
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
        "--client.showErrorDetails",
        "type",
    ]


def trusting_no_proxy(env: dict[str, str]) -> dict[str, str]:
    """``env`` with Streamlit's server (uvicorn) trusting no proxy's X-Forwarded-For unless its
    ``FORWARDED_ALLOW_IPS`` names one: by default it trusts 127.0.0.1, so anyone on this machine could
    sign in under an address of their choosing, which the lockout counts and the audit log keeps."""
    return {"FORWARDED_ALLOW_IPS": "", **env}


def dashboard_env(config: Config, **settings: str) -> dict[str, str]:
    """The environment the app reads its settings from: this command's database, config and port win."""
    env = trusting_no_proxy({**os.environ})
    env |= {"SYNCWATCH_DB": config.db, "SYNCWATCH_DASHBOARD_PORT": str(config.dashboard_port)}
    if config.path:
        env["SYNCWATCH_CONFIG"] = str(Path(config.path).resolve())
    env.update({f"SYNCWATCH_{name.upper()}": value for name, value in settings.items()})
    return env


def _add(path: str, name: str) -> int:
    password = getpass.getpass(f"Password for {name}: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        print("syncwatch dashboard: a password needs at least 8 characters.", file=sys.stderr)
        return 2
    add_user(Path(path), name, password)
    print(f"{name} can now sign in (users file {path}); their role comes from [users] in the config.")
    return 0


def _run(args: argparse.Namespace) -> int:
    config = config_from(args, dashboard_port=args.port, dashboard_users=args.users_file)
    if args.add_user:
        if not config.dashboard_users:
            print("syncwatch dashboard: --add-user needs --users-file FILE (or the dashboard_users setting).")
            return 2
        return _add(config.dashboard_users, args.add_user)
    env = dashboard_env(config, dashboard_users=config.dashboard_users)
    where = describe(parse_url(config.db))
    print(f"syncwatch dashboard: http://{args.address}:{config.dashboard_port} (database {where}); Ctrl-C stops")
    stop_on_signals()  # a plain `kill` stops Streamlit too, instead of leaving it serving on the port
    with subprocess.Popen(streamlit_command(config.dashboard_port, args.address), env=env) as process:
        try:
            return process.wait()
        except KeyboardInterrupt:
            process.terminate()
            return process.wait()


COMMAND = Command("dashboard", "start the Streamlit dashboard", _add_arguments, _run)
