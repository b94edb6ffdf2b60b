"""Collector errors: what a request or file can be refused for, each mapped to one HTTP status.

    CollectorError(ValueError)            base; ``status`` is the HTTP answer, ``str()`` the reason
    ├── MalformedInput                    the body cannot be decoded at all (400)
    ├── Unauthorized                      missing or wrong bearer token (401)
    ├── PayloadTooLarge                   over max_request_bytes, before or after decompression (413)
    └── UnsupportedContentType            a content type or encoding the endpoint does not speak (415)
    Overloaded(RuntimeError)              the writer is saturated; the client should retry (503)

Parsers raise only ``MalformedInput``; item-level problems are rejections, never exceptions.
The server catches all of these at its boundary and answers; nothing propagates into uvicorn.
"""

from __future__ import annotations


class CollectorError(ValueError):
    """Base of every refusal; carries the HTTP status the server answers with."""

    status = 400


class MalformedInput(CollectorError):
    status = 400


class Unauthorized(CollectorError):
    status = 401


class PayloadTooLarge(CollectorError):
    """``size``: what was declared or had arrived when reading stopped; the quarantine keeps only
    the body's start, and records this as its size."""

    status = 413

    def __init__(self, message: str, size: int | None = None) -> None:
        super().__init__(message)
        self.size = size


class UnsupportedContentType(CollectorError):
    status = 415


class Overloaded(RuntimeError):
    """Too many writes in flight; answered with 503 and Retry-After, nothing is quarantined."""

    status = 503
