"""Free text made fit to leave the database: email addresses masked, and length cut.

A partner's error message may name the buyer ("customer jane@… is blocked"), and its summary
reaches the queue, exports and the alert channel. Only emails: a free-text pattern for phone
numbers would also hide the order numbers agents search by. The dashboard's payload masking and
the action layer's audit summaries build on these."""

from __future__ import annotations

import re

MASK = "•••"
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


def mask_email(match: re.Match[str]) -> str:
    """``j•••@•••``: whose address it was stays guessable to someone who knows, not to a reader."""
    return f"{match.group(0)[0]}{MASK}@{MASK}"


def mask_emails(text: str) -> str:
    return EMAIL.sub(mask_email, text)


def clip(text: str, limit: int) -> str:
    """``text`` whole when it fits in ``limit`` characters, else its start and "…" in ``limit``."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
