"""CloudEvents 1.0 in structured JSON mode: one event per line, data inline as JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping

from syncwatch.sim.clock import iso


def event(
    event_id: str,
    source: str,
    type_: str,
    time_us: int,
    data: Mapping[str, object],
    traceparent: str | None = None,
) -> str:
    """``source`` is the emitting system's name, so collectors map it to a system directly."""
    envelope: dict[str, object] = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": type_,
        "time": iso(time_us),
        "datacontenttype": "application/json",
    }
    if traceparent:
        envelope["traceparent"] = traceparent
    envelope["data"] = data
    return json.dumps(envelope, separators=(",", ":"))
