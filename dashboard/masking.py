"""Personal data masked before a payload is shown: names, emails, phones and addresses never reach the screen.

Keys that hold personal data are masked whole; any other string is scanned for email addresses
and phone numbers. Business identifiers (order ids, SKUs, customer account numbers) stay readable,
since that is what an agent searches by.
"""

from __future__ import annotations

import json
import re
from typing import Any

from syncwatch.redact import (
    EMAIL,
    MASK,
    PHONE_CANDIDATE,
    is_phone,
    key_words,
    mask_email,
    mask_phones,
    mask_query,
    personal_key,
)

# Keys whose values look like phone numbers but are identifiers an agent needs.
IDENTIFIER_KEY = re.compile(r"(id|number|order|tracking|sku|ref|code|_at|time)$", re.IGNORECASE)


# Parts of an address coarse enough to show (where a parcel goes, not whose door it is).
_COARSE_PLACE = frozenset({"country", "province", "state", "region"})


def mask_value(key: str, value: Any, inside: bool = False) -> Any:
    """Mask one value under ``key``: whole when the key names personal data, else by pattern.
    ``inside`` a personal object (a shipping address, a recipient) every value is masked but
    identifiers and coarse places: its company, geocode or 'first' name belong to the person too."""
    personal = personal_key(key)
    if not isinstance(value, dict | list) and (personal or (inside and not _shown_inside(key))):
        return MASK if value not in (None, "") else value
    if isinstance(value, dict):
        return {k: mask_value(k, v, inside or personal) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(key, v, inside) for v in value]
    if isinstance(value, str):
        value = mask_query(EMAIL.sub(mask_email, value))
        return value if IDENTIFIER_KEY.search(key) else mask_phones(value)
    return value


def _shown_inside(key: str) -> bool:
    """Whether a value inside a personal object may be shown: an identifier, or a coarse place."""
    return bool(IDENTIFIER_KEY.search(key)) or bool(_COARSE_PLACE.intersection(key_words(key)))


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
        return _masked_pairs(text)


# A "key": "value" pair in text that does not parse as a whole (a quarantined body is often cut or
# broken): its value is masked by its key, as in a document that parses.
_PAIR = re.compile(r'"((?:[^"\\]|\\.)*)"(\s*:\s*)"((?:[^"\\]|\\.)*)"')
_PAIR_BYTES = re.compile(_PAIR.pattern.encode())
_EMAIL_BYTES = re.compile(EMAIL.pattern.encode())
_PHONE_BYTES = re.compile(PHONE_CANDIDATE.pattern.encode())


def _masked_pairs(text: str) -> str:
    out, at = [], 0
    for pair in _PAIR.finditer(text):
        out.append(mask_phones(mask_query(EMAIL.sub(mask_email, text[at : pair.start(3)]))))
        out.append(str(mask_value(pair.group(1), pair.group(3))))
        at = pair.end(3)
    out.append(mask_phones(mask_query(EMAIL.sub(mask_email, text[at:]))))
    return "".join(out)


def masked_bytes(raw: bytes) -> bytes:
    """Bytes as the hex view may show them, masked as the text view is but byte for byte: values of
    personal keys, emails and phone numbers overwritten with ``*`` of the same length, so the length
    is the kept one and offsets still point at the damage (a truncated protobuf, invalid UTF-8)."""
    out, at = bytearray(), 0
    for pair in _PAIR_BYTES.finditer(raw):
        out += _by_pattern(raw[at : pair.start(3)])
        key, value = pair.group(1).decode("utf-8", "replace"), pair.group(3)
        if personal_key(key):
            out += b"*" * len(value)
        else:
            out += _EMAIL_BYTES.sub(_stars, value) if IDENTIFIER_KEY.search(key) else _by_pattern(value)
        at = pair.end(3)
    out += _by_pattern(raw[at:])
    return bytes(out)


def _by_pattern(raw: bytes) -> bytes:
    return _PHONE_BYTES.sub(_phone_stars, _EMAIL_BYTES.sub(_stars, raw))


def _stars(match: re.Match[bytes]) -> bytes:
    return b"*" * len(match.group(0))


def _phone_stars(match: re.Match[bytes]) -> bytes:
    return _stars(match) if is_phone(match.group(0).decode("ascii", "replace")) else match.group(0)


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


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>:$&])")


def literal(text: object) -> str:
    """Text from a partner or a URL, shown as it was written wherever Streamlit reads Markdown
    (headers, notices, fact lists): every Markdown character escaped, so a status message cannot
    become a link, an image that calls home, or a coloured ``:red[URGENT]``."""
    return _MARKDOWN.sub(r"\\\1", str(text))
