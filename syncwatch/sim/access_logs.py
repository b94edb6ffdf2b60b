"""Access-log lines as two gateways write them: nginx ``combined`` plus request time, and a
Kong-style JSON line per request."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from functools import lru_cache

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@lru_cache(maxsize=4096)
def time_local(epoch_s: int) -> str:
    t = time.gmtime(epoch_s)
    return f"{t.tm_mday:02d}/{MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


def nginx(remote_addr: str, start_us: int, request: str, status: int, size: int, agent: str, took_us: int) -> str:
    """``$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
    "$http_referer" "$http_user_agent" $request_time`` (nginx logs when the request ends)."""
    ended = (start_us + took_us) // 1_000_000
    when = time_local(ended)
    return f'{remote_addr} - - [{when}] "{request} HTTP/1.1" {status} {size} "-" "{agent}" {took_us / 1e6:.3f}'


def kong(
    service: str,
    client_ip: str,
    start_us: int,
    request: Mapping[str, object],
    response: Mapping[str, object],
    took_us: int,
) -> str:
    """A Kong ``file-log`` style entry; latencies are milliseconds, ``started_at`` epoch ms."""
    took_ms = max(1, took_us // 1000)
    entry = {
        "request": request,
        "upstream_uri": request["uri"],
        "response": response,
        "service": {"name": service, "host": f"{service}.internal", "port": 443, "protocol": "https"},
        "latencies": {"request": took_ms, "kong": 1, "proxy": took_ms - 1 if response["status"] != 504 else -1},
        "client_ip": client_ip,
        "started_at": start_us // 1000,
    }
    return json.dumps(entry, separators=(",", ":"))
