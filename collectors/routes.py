"""A request's route when no configured path template names it: its path with the id-like
segments replaced by ``{id}``, so that ``/listings/RUG-3116/quantity`` and
``/listings/CAB-1515/quantity`` are one endpoint with one error rate, not one row per SKU.

A segment is id-like when it is all digits, a UUID, long hex, letters and digits joined by
``-``, ``_`` or ``:`` (``RUG-3116``, ``SO-100001``, ``113-1234567-1234567``, ``2026-11``), or a
long token mixing letters and digits. Words, versions (``v2``) and short tokens stay: a template
in ``[[key_rules]]`` names what this guess cannot.
"""

from __future__ import annotations

import re
from functools import lru_cache

_ID_SEGMENT = re.compile(
    r"\d+"
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{16,}"
    r"|(?=[^/]*\d)[A-Za-z0-9]+(?:[-_:][A-Za-z0-9]+)+"
    r"|(?=[^/]*\d)(?=[^/]*[A-Za-z])[A-Za-z0-9]{10,}"
)


@lru_cache(maxsize=4096)
def generic_route(path: str) -> str:
    """``path`` with every id-like segment as ``{id}`` (cached: a log repeats its paths)."""
    return "/".join("{id}" if _ID_SEGMENT.fullmatch(s) else s for s in path.split("/"))
