"""Free text made fit to leave the database: email addresses and phone numbers masked, and length cut.

A partner's error message may name the buyer ("customer jane@… is blocked"), and its summary
reaches the queue, exports and the alert channel: there only emails are masked. Notes, payloads
and audit summaries mask phone numbers too, told from the order numbers, dates and times agents
need by their shape (``is_phone``). The dashboard's payload masking and the action layer's audit
summaries build on these, and on ``personal_key``: which keys hold personal data."""

from __future__ import annotations

import re
from functools import lru_cache
from itertools import pairwise

MASK = "•••"
SECRET_WORDS = ("pass", "secret", "token", "key")  # a query parameter naming one is never shown with its value
# A match may begin only where a run of address characters begins: otherwise a long run without an
# '@' (a partner's 100,000-digit "status") is scanned again from each of its characters, which took
# 75 s for one quarantine reason. Where a match begins, it would have begun anyway.
EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def mask_email(match: re.Match[str]) -> str:
    """``j•••@•••``: whose address it was stays guessable to someone who knows, not to a reader."""
    return f"{match.group(0)[0]}{MASK}@{MASK}"


def mask_emails(text: str) -> str:
    return EMAIL.sub(mask_email, text)


# A run of digits and separators long enough to be a phone number; ``is_phone`` decides.
PHONE_CANDIDATE = re.compile(r"(?<![\w-])\+?\(?\d[\d ()./-]{6,}\d(?![\w-])")
_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4}")
_DIGIT_GROUPS = re.compile(r"\d+")


def is_phone(text: str) -> bool:
    """Whether a run of digits reads as a phone number: 7 to 15 digits, written as one (+44 …,
    (555) …) or in groups of at most four digits (555-123-4567) that are not a date. Order numbers
    (437-6385518-0815154, SO-100231), dates and fractions of seconds have longer groups or shapes."""
    groups = _DIGIT_GROUPS.findall(text)
    if not 7 <= sum(map(len, groups)) <= 15:
        return False
    if text.startswith(("+", "(")) or "(" in text:
        return True
    return len(groups) >= 2 and max(map(len, groups)) <= 4 and not _DATE.search(text)


def mask_phones(text: str, mask: str = MASK) -> str:
    return PHONE_CANDIDATE.sub(lambda match: mask if is_phone(match.group(0)) else match.group(0), text)


def clip(text: str, limit: int) -> str:
    """``text`` whole when it fits in ``limit`` characters, else its start and "…" in ``limit``."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
# A key naming any of these words holds personal data: snake_case, camelCase (Amazon's
# AddressLine1, recipientName) or dotted alike.
PERSONAL_WORDS = frozenset(
    {"email", "phone", "mobile", "tel", "telephone", "fax", "address", "street", "city", "zip", "zipcode"}
    | {"postal", "postcode"}
    | {"recipient", "contact"}
    | {"latitude", "longitude", "lat", "lng", "coordinates"}  # a delivery address's geocode places the buyer's door
)
# 'name' is personal next to one of these, or alone; service.name, product_name and the like are not.
PERSON_WORDS = frozenset(
    {"first", "last", "full", "given", "family", "middle", "buyer", "customer", "person", "billing", "shipping"}
)
_PAIRS = {("e", "mail"), ("ship", "to"), ("bill", "to"), ("deliver", "to")}
# Words run together in lower case (a CloudEvent extension must be: customername, shipto): the
# unambiguous personal words inside one, and a person word or a hand-over glued to 'name' or 'to'.
_INSIDE = ("email", "phone", "address", "street", "postcode", "zipcode", "recipient")
_RUN_TOGETHER = re.compile(
    rf"(?:{'|'.join(sorted(PERSON_WORDS | {'recipient', 'contact'}))})name|(?:ship|bill|deliver)to"
)


def key_words(key: str) -> list[str]:
    """A key's words in lower case: snake_case, camelCase (AddressLine1) and dotted alike."""
    return [w.lower() for w in _WORDS.findall(key)]


@lru_cache(maxsize=4096)
def personal_key(key: str) -> bool:
    """Whether a key names personal data, judged by its words."""
    words = key_words(key)
    if PERSONAL_WORDS.intersection(words) or _PAIRS.intersection(pairwise(words)):
        return True
    if any(w == "line" and n.isdigit() for w, n in pairwise(words)):
        return True  # an address's line1, line2
    if any(_RUN_TOGETHER.fullmatch(w) or (len(w) > 6 and any(p in w for p in _INSIDE)) for w in words):
        return True
    named = "name" in words and not _THING_NAMED.intersection(words)
    return named and (words == ["name"] or bool(PERSON_WORDS.intersection(words)))


# 'name' beside one of these is a thing's name (Shopify's last_order_name is '#1001'), not a person's.
_THING_NAMED = frozenset({"order", "product", "item", "variant", "shop", "store", "service", "event", "file"})


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: a partner's string starting with = + - @ (a customer
    id '=HYPERLINK(...)', a span named '=2+3') would otherwise run as a formula where it is opened.
    Numbers pass as they are, written as text too (an order value '-12.50' is a credit, no formula)."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


_PLAIN_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")


# A query parameter, ``?name=value`` or ``&name=value``, in a URL or a logged path.
_QUERY_PARAM = re.compile(r"([?&])([^=&?#\s\"']+)=([^&#\s\"']*)")
# In a partner's URL also its authentication and signature (an Azure SAS's ``sig``).
_SECRET_NAME = re.compile("|".join((*SECRET_WORDS, "auth", "signature", "^sig$")), re.IGNORECASE)
_ENCODED_EMAIL = re.compile(r"(?<![\w.+%-])[\w.+-]+%40[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)


def mask_query(text: str) -> str:
    """URLs as they may be shown: a query parameter named for a secret (token, api_key, password)
    or for personal data (email, phone) keeps its name, not its value, and an address written
    percent-encoded (``jane%40example.com``) is masked as any other."""

    def parameter(match: re.Match[str]) -> str:
        name = match.group(2)
        if match.group(3) and (_SECRET_NAME.search(name) or personal_key(name)):
            return f"{match.group(1)}{name}={MASK}"
        return match.group(0)

    text = _QUERY_PARAM.sub(parameter, text)
    return _ENCODED_EMAIL.sub(lambda m: f"{m.group(0)[0]}{MASK}@{MASK}", text)
