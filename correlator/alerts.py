"""Alerts: a transaction turning at risk or breached, a partner endpoint starting to fail, or
syncwatch's own correlator falling behind.

Raised inside the correlator pass into an outbox table (so a slow webhook never holds the
database), delivered after it by a scheduler job as Slack-compatible JSON to the URL held in
the environment variable the config names. A transaction alerts once per stage and state; an endpoint
alerts again only after the quiet period. History being replayed (older than a day) is quiet.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from sqlalchemy import Connection

from syncwatch.config import Config
from syncwatch.model import as_utc, count, stage_label, utcnow
from syncwatch.redact import mask_emails, mask_phones
from syncwatch.store import Store
from syncwatch.store import alerts as q

log = logging.getLogger(__name__)
FRESH = timedelta(days=1)
FRESH_TEXT = "day"  # FRESH as an alert says it
ALERTING_STATES = ("at_risk", "breached")
FAILING = ("partner_unavailable", "timeout", "throttled")
FAILING_NOW = timedelta(minutes=15)  # a failure this recent makes an endpoint 'failing' in an alert


@dataclass(frozen=True, slots=True)
class Alert:
    dedupe_key: str
    kind: str
    text: str
    link: str
    transaction_id: str | None = None
    once: bool = False  # raised once ever, as a transaction's are, not again after each quiet period


def transaction_alerts(
    rows: Iterable[dict[str, Any]], link_keys: dict[str, str], config: Config, now: datetime
) -> list[Alert]:
    """Transactions whose stage at fault is at risk or breached, and are not old history: once per
    stage and state (``raise_alerts`` keeps each key once), so an order late once at the ERP still
    alerts when its shipment runs late hours later."""
    found = []
    for row in rows:
        if row["sla_state"] not in ALERTING_STATES:
            continue
        happened = row["due_at"] or row["last_seen_at"]  # the breach (or the late completion) itself
        stage = row["stage_at_fault"]
        state = _state_of(row["stages"], stage) or row["sla_state"]
        if state not in ALERTING_STATES or happened < now - FRESH:
            continue
        key = link_keys.get(row["id"], row["id"])
        said = (
            f"{row['type'].replace('_', ' ').capitalize()} {key} is {state.replace('_', ' ')}{_where(row, state, now)}"
        )
        found.append(
            Alert(
                f"transaction:{row['id']}:{state}:{stage}",
                f"transaction_{state}",
                said,
                _link(config, "search", "key", key),
                row["id"],
            )
        )
    return found


def _state_of(stages: str | list[dict[str, Any]], name: str | None) -> str | None:
    """The SLA state of stage ``name`` in a stored timeline (JSON text, as the writer holds it)."""
    timeline = orjson.loads(stages) if isinstance(stages, str) else stages
    return next((s["sla_state"] for s in timeline if s["name"] == name), None)


def _where(row: dict[str, Any], state: str, now: datetime) -> str:
    """' at shipped (due … UTC)' where the order waits now; ': released was late' when the breach is
    behind it (its due time is then the next stage's, which quoted as the breach's read as a future one)."""
    stage, due = stage_label(row["stage_at_fault"]) or "its next stage", row["due_at"]
    if state == "breached" and (due is None or due > now):  # due now is this breach, not the next stage's
        return f": {stage} was late" + (f"; the next stage is due {due:%Y-%m-%d %H:%M} UTC" if due else "")
    return f" at {stage}" + (f" (due {due:%Y-%m-%d %H:%M} UTC)" if due else "")


def endpoint_alerts(
    conn: Connection, exception_rows: Iterable[dict[str, Any]], config: Config, now: datetime
) -> list[Alert]:
    """One alert per partner endpoint that failed in this pass within ``FAILING_NOW`` (a failure an
    hour old, derived again once the partner is back, is no news), counting every order open there
    with a transient failure in the last day, as stored."""
    failing: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in exception_rows:
        if row["status"] == "open" and row["category"] in FAILING and row["last_seen_at"] >= now - FAILING_NOW:
            failing[(row["system"], row["endpoint"])].append(row)
    counts = q.open_failures(conn, list(failing), FAILING, now - FRESH)
    found = []
    for (system, endpoint), rows in sorted(failing.items()):
        orders = max(counts.get((system, endpoint), 0), len(rows))
        found.append(
            Alert(
                f"endpoint:{system}:{endpoint}",
                "endpoint_failing",
                f"{system} {endpoint} is failing: {count(orders, 'order')} failed there in the last {FRESH_TEXT} "
                f"and {'is' if orders == 1 else 'are'} open, latest: {rows[-1]['summary']}",
                _link(config, "exceptions", "system", system),
            )
        )
    return found


def watch_backlog(store: Store, config: Config, now: datetime | None = None) -> int:
    """Alert when what arrived has waited for correlation too long (see ``Backlog.overdue``): the
    correlator stopped or fails on every pass, so SLA states and the other alerts are silent.
    Like an endpoint, it alerts again only after the quiet period; returns how many were raised."""
    now = now or utcnow()
    backlog = store.correlation_backlog()
    if not backlog.overdue(config.correlate_interval_s, now):
        return 0
    alert = Alert(
        "syncwatch:correlation_behind",
        "correlation_behind",
        f"syncwatch is behind: {backlog.describe()}, so SLA states and alerts leave them out. "
        "Check that `syncwatch serve` runs and what its log says about the correlate job.",
        config.dashboard_url,
    )
    with store.writing() as conn:
        return raise_alerts(conn, [alert], config, now)


def watch_quiet(store: Store, config: Config, now: datetime | None = None) -> int:
    """Alert when a system that was sending has gone quiet (see ``store.quiet``): an exporter
    stopped, a webhook unsubscribed, a log no longer written. Nothing arrives to fail, so no other
    alert would fire. Once per silence: the key names when it began, so a silence of days is not
    re-posted every quiet period, and the next one is news again. Returns how many were raised."""
    now = now or utcnow()
    found = [
        Alert(
            f"quiet:{quiet.system}:{quiet.last_seen:%Y-%m-%dT%H:%M:%S}",
            "system_quiet",
            f"{quiet.system} has gone quiet: nothing since {quiet.last_seen:%Y-%m-%d %H:%M} UTC, though in the same "
            f"hours yesterday it sent something in {quiet.expected} different minutes. Check its exporter, webhook "
            "or log file, and whether it is up.",
            config.dashboard_url,
            once=True,
        )
        for quiet in store.quiet_systems(now)
    ]
    if not found:
        return 0
    with store.writing() as conn:
        return raise_alerts(conn, found, config, now)


def _link(config: Config, page: str, param: str, value: str) -> str:
    return f"{config.dashboard_url.rstrip('/')}/{page}?{param}={quote(value, safe='')}"


def raise_alerts(conn: Connection, found: list[Alert], config: Config, now: datetime) -> int:
    """Queue what is new: transaction alerts (and any marked ``once``) once ever, the others (a
    failing endpoint, a correlator behind) once per quiet period."""
    quiet = timedelta(seconds=config.alert_quiet_period_s)
    once = q.keys_raised_since(conn, [x.dedupe_key for x in found if x.transaction_id or x.once], None)
    recent = q.keys_raised_since(conn, [x.dedupe_key for x in found if not (x.transaction_id or x.once)], now - quiet)
    new = [x for x in found if x.dedupe_key not in once | recent]
    q.enqueue(
        conn,
        [
            {
                "dedupe_key": x.dedupe_key,
                "kind": x.kind,
                "transaction_id": x.transaction_id,
                "text": x.text,
                "link": x.link,
                "created_at": now,
            }
            for x in new
        ],
    )
    return len(new)


def deliver(store: Store, config: Config, client: httpx.Client | None = None, now: datetime | None = None) -> int:
    """Post the alerts due for delivery to the webhook; returns how many it accepted. No URL, no
    delivery. A failed delivery is tried again later, a wait after it that grows (``RETRY_WAITS``).
    Transactions' alerts gather for ``GATHER``; more than ``DIGEST_FROM`` of them (an outage's
    backlog, a catch-up) go as one digest, not a message each that floods the channel. After a failed
    delivery (the webhook down, or answering 429) the round stops: the rest are tried at the next."""
    url = os.environ.get(config.alert_webhook_env)
    if not url:
        return 0
    now = now or utcnow()
    with store.engine.connect() as conn:
        waiting = q.due(conn, now, limit=q.DUE_LIMIT)
    late = [alert for alert in waiting if alert.kind in TRANSACTION_KINDS]
    others = [alert for alert in waiting if alert.kind not in TRANSACTION_KINDS]
    messages: list[tuple[str, str, list[Any]]] = []
    # Orders turn late seconds apart in an outage: new ones gather a minute from the first raised, so
    # that they go together, as one digest where there are more than a few. One tried before goes when due.
    fresh = [alert for alert in late if not alert.attempts]
    if fresh and min(as_utc(alert.created_at) for alert in fresh) > now - GATHER:
        late = [alert for alert in late if alert.attempts]
    if len(late) > DIGEST_FROM:
        messages.append((digest_text(late), f"{config.dashboard_url.rstrip('/')}/operations", late))
        late = []
    messages.extend((alert.text, alert.link, [alert]) for alert in [*others, *late])
    own = client is None
    client = client or httpx.Client(timeout=10)
    sent = 0
    try:
        for text, link, alerts in messages:
            if not _post(store, client, url, text, link, alerts, now):
                break  # down, or asking to slow down (429): the rest wait for the next round
            sent += len(alerts)
        return sent
    finally:
        if own:
            client.close()


DIGEST_FROM = 3  # transactions due at once above which they go as one message
GATHER = timedelta(minutes=1)  # how long a transaction's alert waits for others to go with it
DIGEST_GROUPS = 8  # (kind, state, stage) lines a digest names; the rest are counted
TRANSACTION_KINDS = ("transaction_at_risk", "transaction_breached")


def digest_text(alerts: list[Any]) -> str:
    """'2,583 orders breached at shipped, 120 orders at risk at released': per kind of transaction,
    state and stage, most first (read from each alert's key, ``transaction:ID:STATE:STAGE``)."""
    groups: dict[tuple[str, str, str], int] = defaultdict(int)
    for alert in alerts:
        head, state, stage = alert.dedupe_key.rsplit(":", 2)
        kind = head.removeprefix("transaction:").split(":", 1)[0].replace("_", " ")
        groups[(kind, state.replace("_", " "), stage_label(stage) if stage != "None" else "its next stage")] += 1
    ranked = sorted(groups.items(), key=lambda item: (-item[1], item[0]))
    lines = [f"{count(n, kind)} {state} at {stage}" for (kind, state, stage), n in ranked[:DIGEST_GROUPS]]
    rest = sum(n for _, n in ranked[DIGEST_GROUPS:])
    more = f", and {rest:,} more" if rest else ""
    return f"{len(alerts):,} transactions turned late or at risk: {', '.join(lines)}{more}"


def chat_text(text: str) -> str:
    """An alert's words as a Slack-compatible webhook takes them: personal data masked, and ``&``,
    ``<`` and ``>`` escaped, the three characters Slack reads as control, so a partner's error
    message can neither ping ``<!channel>`` nor dress up a link of its own."""
    masked = mask_phones(mask_emails(text))
    return masked.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _post(store: Store, client: httpx.Client, url: str, text: str, link: str, alerts: list[Any], now: datetime) -> bool:
    """Post one message for ``alerts`` (one alert, or a digest of several); whether it was taken."""
    error = None
    try:
        client.post(url, json={"text": f"{chat_text(text)} <{link}|open in syncwatch>"}).raise_for_status()
    except httpx.HTTPError as err:
        # The webhook URL is a secret: log the failure without it.
        status = f" {err.response.status_code}" if isinstance(err, httpx.HTTPStatusError) else ""
        error = f"{type(err).__name__}{status}"
    except (httpx.InvalidURL, ValueError) as err:
        error = f"the webhook URL is not valid ({type(err).__name__})"
    if error is not None:
        first = alerts[0]
        what = f"alert {first.id} ({first.kind})" if len(alerts) == 1 else f"a digest of {len(alerts)} alerts"
        log.warning("%s not delivered: %s; %s", what, error, _then(first, now))
    with store.writing() as conn:
        for alert in alerts:
            q.record_attempt(conn, alert.id, now, error is None, error)
    return error is None


def _then(alert: Any, now: datetime) -> str:
    attempts = alert.attempts + 1
    if attempts >= q.MAX_ATTEMPTS:
        return f"given up after {attempts} attempts (the Admin page lists it)"
    return f"tried again at {q.next_delivery(now, attempts):%H:%M:%S} UTC"
