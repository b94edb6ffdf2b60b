"""The errors of the action layer; httpx errors are translated where they enter (``partners``).

    ActionError
    ├── NotActionable         nothing to send: no stored payload, no partner, wrong state
    ├── InvalidEdit           the agent's edited payload is not a valid request body
    ├── InProgress            another request holds this action's idempotency key
    └── PartnerError          the partner answered badly or not at all (carries partner, status)
        ├── PartnerRejected   4xx: the request is wrong; nothing was created
        ├── PartnerThrottled  429: try again after ``retry_after`` seconds
        ├── PartnerUnavailable  connection refused or 5xx: the partner is down
        └── PartnerTimeout    no answer in time: the partner may have done it

``definitive`` says whether the partner certainly did nothing: then the next retry may use a
new idempotency key; otherwise it must reuse the old one so the partner can deduplicate.
"""

from __future__ import annotations


class ActionError(Exception):
    """Any failure of an action, with a sentence an agent can read."""


class NotActionable(ActionError):
    """The action cannot run on this exception as it stands."""


class InvalidEdit(ActionError):
    """An edited payload that is not a JSON object with the original's required fields."""


class InProgress(ActionError):
    """The same action on the same exception is running elsewhere (another click, another agent)."""


class PartnerError(ActionError):
    """The partner failed the request; ``status`` is its HTTP status where it answered."""

    definitive = False

    def __init__(self, message: str, partner: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.partner, self.status, self.retry_after = partner, status, retry_after


class PartnerRejected(PartnerError):
    definitive = True


class PartnerThrottled(PartnerError):
    definitive = True


class PartnerUnavailable(PartnerError):
    """Connection refused and 503 are definitive (nothing reached the partner's logic); 502 is not."""

    def __init__(self, message: str, partner: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message, partner, status, retry_after)
        self.definitive = status in (None, 503)


class PartnerTimeout(PartnerError):
    """No answer in time: the partner may have acted, so the same idempotency key must be reused."""
