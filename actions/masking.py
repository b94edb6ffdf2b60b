"""Personal data out of what is shown and audited: names, emails, phones and addresses are masked."""

from __future__ import annotations

import json
from typing import Any

from syncwatch.redact import EMAIL, clip, mask_phones, personal_key

MASK = "***"
SUMMARY_LIMIT = 600


def mask(value: Any) -> Any:
    """A copy with personal fields replaced and emails and phone numbers blanked in free text."""
    if isinstance(value, dict):
        return {k: MASK if personal_key(str(k)) and v not in (None, "") else mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    if isinstance(value, str):
        return mask_phones(EMAIL.sub(MASK, value), MASK)
    return value


def summary(**parts: Any) -> str:
    """One line for the audit log: the request's parts, masked, cut to a readable length."""
    text = " ".join(f"{k}={json.dumps(mask(v), sort_keys=True)}" for k, v in parts.items() if v is not None)
    return clip(text, SUMMARY_LIMIT)
