"""Partner outages staged from outside the running simulator, until someone brings the partner back.

The ``partner_down`` fault fails one order's call; a demo of the bad day syncwatch is built for needs
a partner that stays down while orders pile up at it. The live simulator serves ``POST /_sim/outage``
on 127.0.0.1 only, on the port after its six services, without spans or access-log lines: it is the
stage, not part of the network being watched.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from syncwatch.sim.live import SYSTEMS
from syncwatch.sim.services import PartnerState

PATH = "/_sim/outage"
HOST = "127.0.0.1"
PARTNERS = tuple(system for system in SYSTEMS if system != "erp")
"""The systems that can fail: the ERP is the business's own, which syncwatch watches calling out."""
MODES = {
    "down": "refuses new documents with 503 (cancels and reads still work)",
    "unreachable": "answers every call with 503",
    "slow": "takes new documents but answers 504, as a gateway does when the partner is too slow",
    "up": "answers normally again",
}


DEFAULT_BASE_PORT = 8101


def command(partner: str, mode: str, base_port: int) -> str:
    """The command line that stages an outage, for messages that tell a person how."""
    at = "" if base_port == DEFAULT_BASE_PORT else f" --base-port {base_port}"
    return f"syncwatch sim outage {partner} {mode}{at}"


def admin_port(base_port: int) -> int:
    """The outage endpoint's port: the one after the six services, so one base port names them all."""
    return base_port + len(SYSTEMS)


def problem(partner: Any, mode: Any) -> str | None:
    """Why an outage request cannot be carried out, as one sentence; None when it can."""
    if partner not in PARTNERS:
        return f"{partner!r} is not a partner of the simulator; choose one of {', '.join(PARTNERS)}."
    if mode not in MODES:
        return f"{mode!r} is not an outage mode; choose one of {', '.join(MODES)}."
    return None


def outages(partners: Mapping[str, PartnerState]) -> dict[str, str]:
    return {name: state.outage for name, state in partners.items() if state.outage}


def admin_app(partners: Mapping[str, PartnerState]) -> Starlette:
    async def stage(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            example = '{"partner": "3pl-fastship", "mode": "down"}'
            return JSONResponse({"error": f"the body must be a JSON object like {example}."}, status_code=400)
        partner, mode = body.get("partner"), body.get("mode")
        error = problem(partner, mode)
        if error is not None:
            return JSONResponse({"error": error}, status_code=400)
        partners[partner].outage = "" if mode == "up" else mode
        return JSONResponse({"partner": partner, "mode": mode, "outages": outages(partners)})

    async def listing(_request: Request) -> Response:
        return JSONResponse({"outages": outages(partners)})

    return Starlette(routes=[Route(PATH, stage, methods=["POST"]), Route(PATH, listing, methods=["GET"])])


def admin_socket(port: int) -> socket.socket | None:
    """The endpoint's listening socket; when the port is taken the network runs on without it,
    saying so once, since outages are a convenience and the network is what was asked for."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart need not wait
    try:
        sock.bind((HOST, port))
    except OSError as err:
        sock.close()
        print(
            f"syncwatch sim: cannot stage outages on this run, {HOST}:{port} is taken ({err.strerror}).",
            file=sys.stderr,
        )
        return None
    return sock
