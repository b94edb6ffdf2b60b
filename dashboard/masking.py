"""Personal data masked before a payload is shown: names, emails, phones and addresses never reach the screen.

Keys that hold personal data are masked whole; any other string is scanned for email addresses
and phone numbers. Business identifiers (order ids, SKUs, customer account numbers) stay readable,
since that is what an agent searches by.
"""

from __future__ import annotations

import json
import re
from typing import Any

from syncwatch.redact import EMAIL, MASK, mask_email, personal_key

PHONE = re.compile(r"(?<![\w-])\+?\d[\d ()./-]{7,}\d(?![\w-])")
# Keys whose values look like phone numbers but are identifiers an agent needs.
IDENTIFIER_KEY = re.compile(r"(id|number|order|tracking|sku|ref|code|_at|time)$", re.IGNORECASE)


def mask_value(key: str, value: Any) -> Any:
    """Mask one value under ``key``: whole when the key names personal data, else by pattern."""
    if personal_key(key) and not isinstance(value, dict | list):
        return MASK if value not in (None, "") else value
    if isinstance(value, dict):
        return {k: mask_value(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(key, v) for v in value]
    if isinstance(value, str):
        value = EMAIL.sub(mask_email, value)
        return value if IDENTIFIER_KEY.search(key) else PHONE.sub(MASK, value)
    return value


def mask(data: Any) -> Any:
    """Mask a decoded JSON document (or attributes mapping)."""
    return mask_value("", data)


def masked_text(raw: bytes | str | None) -> str:
    """A payload as it may be shown: JSON pretty-printed and masked, other text masked by pattern."""
    if raw is None:
        return ""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    try:
        return json.dumps(mask(json.loads(text)), indent=2, ensure_ascii=False)
    except ValueError:
        return PHONE.sub(MASK, EMAIL.sub(mask_email, text))


_EMAIL_BYTES = re.compile(EMAIL.pattern.encode())
_PHONE_BYTES = re.compile(PHONE.pattern.encode())


def masked_bytes(raw: bytes) -> bytes:
    """Bytes as the hex view may show them, masked as the text view is: a JSON body as its masked
    text; anything else (a truncated protobuf, invalid UTF-8) byte for byte, emails and phone
    numbers overwritten with ``*`` of the same length, so offsets still point at the damage."""
    try:
        json.loads(raw)
    except ValueError:
        return _PHONE_BYTES.sub(_stars, _EMAIL_BYTES.sub(_stars, raw))
    return masked_text(raw).encode()


def _stars(match: re.Match[bytes]) -> bytes:
    return b"*" * len(match.group(0))


def apply_edits(original: Any, shown: Any, edited: Any) -> Any:
    """The payload to re-send: the original, with only what the agent changed in the masked copy.

    A field the agent left masked keeps its real value, so editing one field never sends '•••'
    and never needed the personal data on screen.
    """
    if isinstance(original, dict) and isinstance(shown, dict) and isinstance(edited, dict):
        merged = {k: apply_edits(original.get(k), shown.get(k), v) for k, v in edited.items()}
        return merged
    if isinstance(original, list) and isinstance(shown, list) and isinstance(edited, list):
        if len(original) == len(edited) == len(shown):
            return [apply_edits(a, b, c) for a, b, c in zip(original, shown, edited, strict=True)]
        return edited
    return original if edited == shown else edited
