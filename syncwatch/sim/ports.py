"""Free ports on 127.0.0.1 for a network of services that sit on consecutive ports."""

from __future__ import annotations

import socket


def free_port_run(count: int, attempts: int = 50) -> int:
    """The first of ``count`` consecutive ports that are free right now."""
    for _ in range(attempts):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count < 65536 and all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no {count} free ports in a row on 127.0.0.1")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
