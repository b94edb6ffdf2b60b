"""`syncwatch demo` stops `serve` last: stopped with the simulator, `serve` went first and the
simulator's last span export failed ("Failed to export spans batch")."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from syncwatch.commands.demo import Processes

CHILD = """
import pathlib, signal, sys, time
folder, name, delay = pathlib.Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])

def stop(*_):
    time.sleep(delay)  # the simulator flushing its last spans takes a moment
    with (folder / "stopped").open("a") as log:
        log.write(name + "\\n")
    sys.exit(0)

signal.signal(signal.SIGINT, stop)
(folder / name).touch()
while True:
    time.sleep(0.05)
"""


def test_serve_is_stopped_only_once_the_simulator_and_dashboard_have_exited(tmp_path: Path) -> None:
    processes = Processes()
    for name, delay in (("serve", 0.0), ("sim", 0.6), ("dashboard", 0.1)):
        processes.start(name, [sys.executable, "-c", CHILD, str(tmp_path), name, str(delay)])
    deadline = time.monotonic() + 30
    while not all((tmp_path / name).exists() for name in ("serve", "sim", "dashboard")):
        assert time.monotonic() < deadline and processes.dead() is None, "a child did not start"
        time.sleep(0.05)
    processes.stop()
    assert (tmp_path / "stopped").read_text().split() == ["dashboard", "sim", "serve"]
