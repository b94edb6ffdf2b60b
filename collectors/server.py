"""The ASGI app `syncwatch serve` runs: OTLP/HTTP (/v1/traces, /v1/logs), CloudEvents (/v1/events)
and partner webhooks (/v1/webhooks/NAME); /healthz for load balancers and /metrics for Prometheus.

Every request goes: auth → overload check → bounded body (and bounded gunzip) → parse → one
transaction. Refusals are answered with the status the protocol specifies and the input is
quarantined; nothing a sender does reaches uvicorn as an exception.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from collectors import events, otlp, webhook
from collectors.base import Parsed, media_type
from collectors.errors import (
    CollectorError,
    MalformedInput,
    Overloaded,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedContentType,
)
from collectors.otlp_model import LOGS, TRACES
from collectors.sink import Committed, Sink
from collectors.workers import ParsePool, Parser
from syncwatch.config.schema import Webhook
from syncwatch.metrics import ServiceMetrics

log = logging.getLogger(__name__)
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
OTLP_ENCODINGS = {PROTOBUF: "protobuf", JSON: "json"}
UNAVAILABLE = 14  # google.rpc.Code


def load_tokens(sources: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, bytes]:
    """Source name → token, read from the environment variables the config names (never logged)."""
    tokens = {}
    for name, env in sources.items():
        value = environ.get(env)
        if value:
            tokens[name] = value.encode()
        else:
            log.warning("source %s: environment variable %s is not set; its requests will be refused", name, env)
    return tokens


UNAUTHENTICATED_RAW_BYTES = 1024  # kept of a body refused for its token: who sent it proved nothing
# Refusals for a token kept in quarantine, at most this many a minute: anyone who reaches the port
# can send them, so beyond it they are answered and counted, not kept, and the database cannot be filled.
UNAUTHENTICATED_KEPT_PER_MINUTE = 60


class Allowance:
    """At most ``per_minute`` takes a minute, refilled steadily (a bucket of one minute's worth)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._left = float(per_minute)
        self._at = clock()

    def take(self) -> bool:
        now = self.clock()
        self._left = min(self.per_minute, self._left + (now - self._at) * self.per_minute / 60)
        self._at = now
        if self._left >= 1:
            self._left -= 1
            return True
        return False


def match_token(header: str | None, tokens: Mapping[str, bytes]) -> str:
    """The source a bearer token belongs to; compared in constant time against every token."""
    if not header or not header.lower().startswith("bearer "):
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    given = header[7:].strip().encode()
    if not given:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    found = None
    for name, token in tokens.items():
        if token and hmac.compare_digest(given, token) and found is None:
            found = name
    if found is None:
        raise Unauthorized("bearer token is not valid")
    return found


def gunzip(body: bytes, limit: int) -> bytes:
    """Decompress without ever holding more than ``limit`` + 1 bytes: a gzip bomb stops early."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as err:
        raise MalformedInput(f"body is not valid gzip: {err}") from None
    if len(out) > limit:
        raise PayloadTooLarge(f"body is over the limit of {limit:,} bytes once decompressed")
    if not inflater.eof:
        raise MalformedInput("gzip body is truncated")
    return out


class Receiver:
    """The request handlers, bound to one sink and its limits."""

    def __init__(
        self, sink: Sink, environ: Mapping[str, str] | None = None, parse_pool: ParsePool | None = None
    ) -> None:
        environ = os.environ if environ is None else environ
        config = sink.config
        self.sink = sink
        self.parse_pool = parse_pool
        self.max_bytes: int = config.max_request_bytes
        self.max_inflight = config.file.collectors.max_inflight_writes
        self.retry_after = str(max(1, round(config.file.collectors.retry_after.total_seconds())))
        self.tokens = load_tokens({n: s.token_env for n, s in config.file.sources.items()}, environ)
        self.auth_required = bool(config.file.sources)
        self.webhooks: dict[str, Webhook] = dict(config.file.webhooks)
        self.webhook_tokens = load_tokens(
            {n: w.token_env for n, w in self.webhooks.items() if w.token_env is not None}, environ
        )
        self.inflight = 0
        self.unauthenticated = Allowance(UNAUTHENTICATED_KEPT_PER_MINUTE)
        packaged = []
        for name, mapping in self.webhooks.items():
            unread = sink.keys.unread_system(mapping.system)
            if unread and (name in config.own_webhooks or config.path is None):
                log.warning(
                    "webhook %s: %s, so only the rules for every system read its notices, which then link to "
                    "no order unless those find its identifiers",
                    name,
                    unread,
                )
            elif unread:
                packaged.append(name)
        if packaged:  # the packaged mappings stay when a config replaces the key rules they came with
            log.info(
                "packaged webhooks %s take notices, but no [[key_rules]] of %s reads them: if a partner posts "
                "there, copy their rules from the packaged defaults",
                ", ".join(packaged),
                config.path,
            )

    def run_parser(self, parser: Parser, args: tuple[object, ...], source: str) -> Parsed:
        """``parser(*args, ctx)``: in a worker process when the receiver has a pool, else here."""
        if self.parse_pool is not None:
            return self.parse_pool.parse(parser, args, source)
        return parser(*args, self.sink.context(source))

    def source_for(self, request: Request, default: str) -> str:
        if not self.auth_required:
            return default
        return match_token(request.headers.get("authorization"), self.tokens)

    async def read_body(self, request: Request, received: bytearray) -> bytes:
        """The decoded body; ``received`` gets what arrived, as sent and up to the quarantine's
        raw limit, so a body refused while reading or decoding is quarantined with its own bytes."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            size = int(declared)
            raise PayloadTooLarge(f"body of {size:,} bytes is over the limit of {self.max_bytes:,}", size)
        chunks, size, keep = [], 0, self.sink.store.raw_limit
        async for chunk in request.stream():
            size += len(chunk)
            if len(received) < keep:
                received += chunk[: keep - len(received)]
            if size > self.max_bytes:
                raise PayloadTooLarge(f"body is over the limit of {self.max_bytes:,} bytes", size)
            chunks.append(chunk)
        body = b"".join(chunks)
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding == "gzip":
            try:
                return gunzip(body, self.max_bytes)
            except PayloadTooLarge as err:
                raise PayloadTooLarge(str(err), len(body)) from None  # the body as sent is its size
        if encoding not in ("identity", ""):
            raise UnsupportedContentType(f"content encoding {encoding!r} is not supported (gzip or none)")
        return body

    async def handle(
        self,
        request: Request,
        default_source: str,
        parse: Callable[[bytes, str], Parsed],
        answer: Callable[[Committed, Parsed, str], Response],
        refuse: Callable[[int, str], Response],
        token_source: Callable[[Request, str], str] | None = None,
    ) -> Response:
        """The one request path every endpoint shares; ``parse`` gets (body, source)."""
        content_type = request.headers.get("content-type")
        source, body, received = default_source, b"", bytearray()
        try:
            source = (token_source or self.source_for)(request, default_source)
            body = await self.read_body(request, received)
            parsed, committed = await self._guarded(lambda: self._store(parse, body, source, content_type))
        except Overloaded as err:
            return self._with_retry_after(refuse(err.status, str(err)))
        except CollectorError as err:
            if isinstance(err, Unauthorized):
                await self.quarantine_unauthenticated(source, str(err), request, content_type)
                return refuse(err.status, str(err))
            kept = body or bytes(received) or await self.raw_prefix(request)
            size = err.size if isinstance(err, PayloadTooLarge) else None
            await self.quarantine(source, str(err), kept, content_type, size)
            return refuse(err.status, str(err))
        except SQLAlchemyError as err:
            log.error("store write failed for %s: %s", source, err.__class__.__name__)
            return self._with_retry_after(refuse(503, "the store is unavailable; retry later"))
        return answer(committed, parsed, source)

    def _store(
        self, parse: Callable[[bytes, str], Parsed], body: bytes, source: str, content_type: str | None
    ) -> tuple[Parsed, Committed]:
        parsed = parse(body, source)
        return parsed, self.sink.commit(parsed, source, content_type)

    async def _guarded(self, work: Callable[[], tuple[Parsed, Committed]]) -> tuple[Parsed, Committed]:
        """Run CPU or store work off the event loop, refusing when too much is in flight."""
        if self.inflight >= self.max_inflight:
            raise Overloaded(f"{self.inflight} requests are being written; retry after {self.retry_after} s")
        self.inflight += 1
        try:
            return await run_in_threadpool(work)
        finally:
            self.inflight -= 1

    async def raw_prefix(self, request: Request) -> bytes:
        """What a refused request's body began with (for quarantine), read no further than the limit."""
        try:
            chunks, size = [], 0
            async for chunk in request.stream():
                chunks.append(chunk)
                size += len(chunk)
                if size >= self.sink.store.raw_limit:
                    break
            return b"".join(chunks)
        except Exception:  # the stream may already be consumed or closed; the reason is what matters
            return b""

    async def quarantine(
        self, source: str, reason: str, raw: bytes, content_type: str | None, size: int | None = None
    ) -> None:
        try:
            await run_in_threadpool(self.sink.reject, source, reason, raw, None, content_type, size)
        except SQLAlchemyError as err:
            log.error("quarantine write failed for %s: %s", source, err.__class__.__name__)

    async def quarantine_unauthenticated(
        self, source: str, reason: str, request: Request, content_type: str | None
    ) -> None:
        """Keep the first kilobyte of a request refused for its token while the allowance lasts;
        beyond it, count the refusal in the metrics and the log (thinned as quarantine warnings are)."""
        if self.unauthenticated.take():
            raw = (await self.raw_prefix(request))[:UNAUTHENTICATED_RAW_BYTES]
            await self.quarantine(source, reason, raw, content_type)
            return
        if self.sink.metrics is not None:
            self.sink.metrics.refused_unkept(source)
        why = f"more than {UNAUTHENTICATED_KEPT_PER_MINUTE} a minute without a valid token; /metrics counts them"
        self.sink.rejections.not_kept(source, reason, why)

    def _with_retry_after(self, response: Response) -> Response:
        response.headers["Retry-After"] = self.retry_after
        return response


def otlp_endpoint(receiver: Receiver, signal: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        media = media_type(request.headers.get("content-type"))
        encoding = OTLP_ENCODINGS.get(media)
        if encoding is None:
            return await _unsupported_otlp(receiver, request, media, signal)

        def parse(body: bytes, source: str) -> Parsed:
            return receiver.run_parser(otlp.parse, (signal, encoding, body), source)

        def answer(_committed: Committed, parsed: Parsed, _source: str) -> Response:
            message = "; ".join(sorted({r.reason for r in parsed.rejections}))[:1000]
            body = otlp.success_body(signal, encoding, len(parsed.rejections), message)
            return Response(body, 200, media_type=media)

        def refuse(status: int, message: str) -> Response:
            code = UNAVAILABLE if status == 503 else otlp.INVALID_ARGUMENT
            return Response(otlp.status_body(encoding, message, code), status, media_type=media)

        return await receiver.handle(request, f"otlp/{signal}", parse, answer, refuse)

    return endpoint


async def _unsupported_otlp(receiver: Receiver, request: Request, media: str, signal: str) -> Response:
    message = f"content type {media or '(none)'!r} is not supported; send {PROTOBUF} or {JSON}"
    try:
        source = receiver.source_for(request, f"otlp/{signal}")
    except Unauthorized as err:
        source, message = f"otlp/{signal}", str(err)
        await receiver.quarantine_unauthenticated(source, message, request, media)
        return Response(otlp.status_body("json", message), 401, media_type=JSON)
    await receiver.quarantine(source, message, await receiver.raw_prefix(request), media or None)
    return Response(otlp.status_body("json", message), 415, media_type=JSON)


def _summary(committed: Committed, parsed: Parsed) -> dict[str, object]:
    refused = [(r.position, r.reason) for r in parsed.rejections] + [
        (c.position, c.reason) for c in committed.conflicts
    ]
    return {
        "stored": committed.stored,
        "duplicates": committed.duplicates,
        "rejected": len(refused),
        "errors": [{"position": position, "reason": reason} for position, reason in refused[:100]],
    }


def _json_answer(committed: Committed, parsed: Parsed, _source: str) -> Response:
    """200 when anything was accepted; 400 when every item was rejected (CloudEvents binding)."""
    status = (
        400 if (parsed.rejections or committed.conflicts) and not (committed.stored or committed.duplicates) else 200
    )
    return JSONResponse(_summary(committed, parsed), status)


def _no_such_endpoint(routes: list[Route]) -> Callable[[Request, Exception], Awaitable[Response]]:
    """A wrong path or method (/v1/trace, GET /v1/traces) is told what this server takes."""
    offered = ", ".join(f"{'/'.join(sorted(r.methods - {'HEAD'}))} {r.path}" for r in routes if r.methods)

    async def answer(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        wrong = "method" if status == 405 else "path"
        return _json_refuse(status, f"no endpoint for {request.method} {request.url.path} (wrong {wrong}); {offered}")

    return answer


def _json_refuse(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status)


def events_endpoint(receiver: Receiver) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}

        def parse(body: bytes, source: str) -> Parsed:
            return receiver.run_parser(events.parse_http, (body, headers), source)

        return await receiver.handle(request, "events", parse, _json_answer, _json_refuse)

    return endpoint


def webhook_endpoint(receiver: Receiver) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        name = request.path_params["name"]
        mapping = receiver.webhooks.get(name)
        if mapping is None:
            # Which webhooks exist is told only to a sender holding one of the tokens, where any is set.
            tokens = {**receiver.tokens, **receiver.webhook_tokens}
            if any(tokens.values()):
                try:
                    match_token(request.headers.get("authorization"), tokens)
                except Unauthorized as err:
                    return _json_refuse(401, str(err))
            return _json_refuse(404, f"no webhook named {name!r} is configured")
        headers = {k.lower(): v for k, v in request.headers.items()}

        def parse(body: bytes, source: str) -> Parsed:
            return receiver.run_parser(webhook.parse, (body, headers, mapping, name), source)

        def token_source(req: Request, default: str) -> str:
            if mapping.token_env is None:  # no token of its own: open only where every endpoint is
                return receiver.source_for(req, default)
            return match_token(req.headers.get("authorization"), {name: receiver.webhook_tokens.get(name, b"")})

        return await receiver.handle(request, f"webhook/{name}", parse, _json_answer, _json_refuse, token_source)

    return endpoint


HEALTH_WITHIN_S = 3.0  # a monitor's probe times out in seconds: answer 503 before it gives up
WRITE_STALLED_S = 10.0  # a write waiting this long is no busy moment: the database is held


def health_endpoint(receiver: Receiver) -> Callable[[Request], Awaitable[Response]]:
    """``ok`` while the database answers and the correlator keeps up; ``degraded`` (still 200:
    ingest works) when what arrived waits for correlation longer than it should; 503 when the
    database does not answer, as every write would then fail."""
    store, interval = receiver.sink.store, receiver.sink.config.correlate_interval_s

    async def health(_request: Request) -> Response:
        try:
            waiting = await run_in_threadpool(store.correlation_backlog, HEALTH_WITHIN_S)
        except SQLAlchemyError as err:
            log.warning("health check: the database does not answer (%s)", err.__class__.__name__)
            return JSONResponse({"status": "unavailable", "database": "does not answer"}, status_code=503)
        body: dict[str, object] = {
            "status": "ok",
            "database": "ok",
            "correlation_backlog": waiting.observations,
            "waiting_since": waiting.waiting_since.isoformat() if waiting.waiting_since else None,
        }
        stalled = receiver.sink.write_waiting_s()
        if stalled >= WRITE_STALLED_S:
            body.update(
                status="degraded",
                reason=f"a store write has waited {stalled:.0f} s for the database's write lock (held by a long "
                "correlator pass or another process); senders wait, or time out and retry",
            )
        elif waiting.overdue(interval, datetime.now(UTC)):
            body.update(status="degraded", reason=f"{waiting.describe()}: is the correlator job running?")
        return JSONResponse(body)

    return health


def metrics_endpoint(metrics: ServiceMetrics) -> Callable[[Request], Response]:
    """Prometheus' text format; a plain function, so Starlette runs it (and its reads) in a thread."""

    def scrape(_request: Request) -> Response:
        body, content_type = metrics.exposition()
        return Response(body, 200, headers={"Content-Type": content_type})

    return scrape


FIXED_PATHS = frozenset({"/v1/traces", "/v1/logs", "/v1/events", "/healthz", "/metrics"})


class RequestMetrics:
    """Counts every request by endpoint and status and times it. A path nobody configured is
    counted as ``other`` (or an unknown webhook), so a scanner cannot grow the label set."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, webhooks: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.webhooks = webhooks

    def endpoint(self, path: str) -> str:
        path = path.removesuffix("/") or "/"  # /v1/traces/ is /v1/traces
        if path in FIXED_PATHS:
            return path
        if path.startswith("/v1/webhooks/"):
            return path if path.removeprefix("/v1/webhooks/") in self.webhooks else "/v1/webhooks/(unknown)"
        return "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.answered(self.endpoint(scope["path"]), status[0], time.perf_counter() - started)


def _closing(steps: Sequence[Callable[[], object]]) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        for step in steps:
            await run_in_threadpool(step)

    return lifespan


def create_app(
    sink: Sink,
    environ: Mapping[str, str] | None = None,
    parse_pool: ParsePool | None = None,
    on_shutdown: Sequence[Callable[[], object]] = (),
    metrics: ServiceMetrics | None = None,
) -> Starlette:
    """The app; with ``parse_pool`` request bodies are parsed in its worker processes; with
    ``metrics`` (made here if not given) the sink counts into them and /metrics shows them. When the
    app shuts down it runs ``on_shutdown`` and then closes the pool: uvicorn re-raises SIGTERM once
    it has stopped, so code after ``Server.run`` would not run, and the scheduler's jobs would be
    cut off and the workers left to notice on their own."""
    receiver = Receiver(sink, environ, parse_pool)
    metrics = metrics or ServiceMetrics(sink.store)
    sink.metrics = metrics
    routes = [
        Route("/v1/traces", otlp_endpoint(receiver, TRACES), methods=["POST"]),
        Route("/v1/logs", otlp_endpoint(receiver, LOGS), methods=["POST"]),
        Route("/v1/events", events_endpoint(receiver), methods=["POST"]),
        Route("/v1/webhooks/{name}", webhook_endpoint(receiver), methods=["POST"]),
        Route("/healthz", health_endpoint(receiver), methods=["GET"]),
        Route("/metrics", metrics_endpoint(metrics), methods=["GET"]),
    ]
    middleware = [Middleware(RequestMetrics, metrics=metrics, webhooks=frozenset(receiver.webhooks))]
    steps = [*on_shutdown, *([parse_pool.close] if parse_pool is not None else [])]
    missing = _no_such_endpoint(routes)
    handlers = {404: missing, 405: missing}
    # The same endpoints with a trailing slash: a redirect (Starlette's answer) loses the body of an
    # exporter that does not follow it.
    slashed = [Route(f"{r.path}/", r.endpoint, methods=r.methods) for r in routes]
    app = Starlette(
        routes=[*routes, *slashed], middleware=middleware, lifespan=_closing(steps), exception_handlers=handlers
    )
    app.state.receiver = receiver
    return app
