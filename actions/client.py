"""The one seam to partner systems: a small client over httpx that authenticates, rate-limits,
traces each call as a CLIENT span and translates httpx errors into ``actions.errors``."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpx
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from actions.errors import PartnerError, PartnerRejected, PartnerThrottled, PartnerTimeout, PartnerUnavailable
from syncwatch.config.schema import Partner
from syncwatch.model import PARTNER_CALLED


@dataclass(frozen=True)
class Response:
    """A partner's successful answer, and how long the partner took (benchmarks leave it out)."""

    status: int
    body: dict[str, Any]
    seconds: float


_PARTNER_SECONDS: ContextVar[list[float] | None] = ContextVar("partner_seconds", default=None)


@contextmanager
def partner_time() -> Iterator[list[float]]:
    """Collect the seconds partners take inside the block (benchmarks report syncwatch's own time)."""
    spent: list[float] = []
    token = _PARTNER_SECONDS.set(spent)
    try:
        yield spent
    finally:
        _PARTNER_SECONDS.reset(token)


class RateLimiter:
    """At most ``rate`` calls a second per partner, shared by every thread (bulk jobs, policies).

    Calls are spaced ``1/rate`` apart, measured when each is let through, not when it was
    scheduled: a thread that wakes late from its wait (the interpreter was busy) would otherwise
    go out together with the next one, and the partner would see more than ``rate`` in a second.
    """

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval, self.clock, self.sleep = 1.0 / rate, clock, sleep
        self.next_slot = 0.0
        self.lock = threading.Lock()

    def acquire(self) -> float:
        """Wait for the next free slot and take it; returns the seconds waited."""
        waited = 0.0
        while True:
            with self.lock:
                now = self.clock()
                if now >= self.next_slot:
                    self.next_slot = now + self.interval
                    return waited
                wait = self.next_slot - now
            self.sleep(wait)
            waited += wait


class PartnerClient:
    """One partner's HTTP API. ``transport`` lets tests swap the network (httpx.MockTransport)."""

    def __init__(
        self, name: str, partner: Partner, tracer: Tracer, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.name, self.partner, self.tracer = name, partner, tracer
        self.limiter = RateLimiter(partner.rate_limit_per_s)
        self.http = httpx.Client(
            base_url=partner.base_url, timeout=partner.timeout_s, headers=_auth(partner), transport=transport
        )

    def send(
        self, method: str, path: str, *, body: Mapping[str, Any] | None = None, idempotency_key: str | None = None
    ) -> Response:
        """One request under a CLIENT span; raises a ``PartnerError`` unless the answer is 2xx."""
        self.limiter.acquire()
        # Named by the path alone, as OpenTelemetry names HTTP spans: a lookup's query (its order
        # number) would otherwise make every lookup an endpoint of its own.
        # The span's status is set below from the partner's answer; the SDK's own would overwrite it
        # with the exception's class name ('PartnerRejected: …'), which the exception's title would quote.
        name = f"{method} {httpx.URL(path).path}"
        with self.tracer.start_as_current_span(name, kind=SpanKind.CLIENT, set_status_on_exception=False) as span:
            span.set_attributes(_request_attributes(self, method, path, body))
            headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
            inject(headers)
            began = time.perf_counter()
            try:
                answer = self.http.request(method, path, json=body, headers=headers)
            except httpx.HTTPError as err:
                error = _transport_error(self.name, err)
                span.set_status(Status(StatusCode.ERROR, str(error)))
                span.set_attribute("error.type", type(err).__name__)
                raise error from err
            finally:
                seconds = time.perf_counter() - began
                spent = _PARTNER_SECONDS.get()
                if spent is not None:
                    spent.append(seconds)
            span.set_attribute("http.response.status_code", answer.status_code)
            if answer.status_code >= 400:
                error = _status_error(self.name, answer)
                span.set_status(Status(StatusCode.ERROR, str(error)))
                raise error
            return Response(answer.status_code, _json(answer), seconds)

    def close(self) -> None:
        self.http.close()


def _auth(partner: Partner) -> dict[str, str]:
    """The bearer token from the environment variable the config names; never logged or stored."""
    token = os.environ.get(partner.token_env) if partner.token_env else None
    return {"Authorization": f"Bearer {token}"} if token else {}


def _request_attributes(
    client: PartnerClient, method: str, path: str, body: Mapping[str, Any] | None
) -> dict[str, Any]:
    url = client.http.base_url.join(path)
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.full": str(url),
        "url.path": url.path,
        "server.address": client.http.base_url.host,
        PARTNER_CALLED: client.name,
    }
    if query := url.query.decode():
        attributes["url.query"] = query
    if body is not None:
        attributes["http.request.body"] = json.dumps(body, sort_keys=True)
    return attributes


def _json(answer: httpx.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {"text": answer.text[:500]}
    return body if isinstance(body, dict) else {"items": body}


def _status_error(partner: str, answer: httpx.Response) -> PartnerError:
    reason = str(_json(answer).get("error") or answer.reason_phrase or "error")
    message = f"{partner} answered {answer.status_code}: {reason}"
    if answer.status_code == 429:
        return PartnerThrottled(message, partner, 429, _retry_after(answer.headers.get("retry-after")))
    if answer.status_code == 504:
        return PartnerTimeout(message, partner, 504)
    if answer.status_code >= 500:
        return PartnerUnavailable(message, partner, answer.status_code, _retry_after(answer.headers.get("retry-after")))
    return PartnerRejected(message, partner, answer.status_code)


def _transport_error(partner: str, err: httpx.HTTPError) -> PartnerError:
    if isinstance(err, httpx.TimeoutException) and not isinstance(err, httpx.ConnectTimeout):
        return PartnerTimeout(f"{partner} timed out; it may have acted on the request", partner)
    return PartnerUnavailable(f"{partner} could not be reached ({type(err).__name__})", partner)


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is rare from APIs and read as absent)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
