"""syncwatch's own metrics, for the Prometheus (or any OpenMetrics) scraper of whoever runs it:
`serve` answers them at ``GET /metrics``.

Counted as they happen in this process: requests to the collector endpoints by status and how
long they took, observations stored and re-delivered and inputs quarantined by source, and every
scheduler job's runs, failures and duration. Read from the database at each scrape: what waits for
correlation, unfinished exceptions, open transactions by SLA state, alerts the webhook has not
taken — the same figures `/healthz`, `syncwatch stats` and the Admin page show, as time series to
alert on — and the partners whose circuit holds the automatic retries (the Admin page's audit log
says why). Labels are endpoints, configured source names, job ids, systems, partners, categories
and states: never an order, a customer or anything else that grows with traffic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from syncwatch.store import Store

log = logging.getLogger(__name__)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)


class ServiceMetrics:
    """One registry per `serve` (tests run several in one process, so never the global one)."""

    def __init__(self, store: Store) -> None:
        disable_created_metrics()  # the `_created` twin of every counter only doubles what a scrape carries
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "syncwatch_requests", "Requests to the collector endpoints", ["endpoint", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "syncwatch_request_duration_seconds",
            "Time to answer a request to a collector endpoint",
            ["endpoint"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.stored = Counter(
            "syncwatch_observations_stored", "Observations stored for the first time", ["source"], registry=r
        )
        self.redelivered = Counter(
            "syncwatch_observations_redelivered", "Observations delivered again and stored once", ["source"], registry=r
        )
        self.quarantined = Counter(
            "syncwatch_inputs_quarantined", "Inputs rejected into quarantine", ["source"], registry=r
        )
        self.unkept = Counter(
            "syncwatch_inputs_refused_unkept",
            "Requests refused for their token beyond the ones a minute kept in quarantine",
            ["source"],
            registry=r,
        )
        self.job_runs = Counter(
            "syncwatch_job_runs",
            "Scheduler job runs: ok, failed, or skipped (another serve ran it)",
            ["job", "outcome"],
            registry=r,
        )
        self.job_seconds = Histogram(
            "syncwatch_job_duration_seconds", "Time a scheduler job run took", ["job"], buckets=JOB_BUCKETS, registry=r
        )
        self.job_success = Gauge(
            "syncwatch_job_last_success_timestamp_seconds",
            "When each scheduler job last ran without failing",
            ["job"],
            registry=r,
        )
        self.tail_behind = Gauge(
            "syncwatch_tail_bytes_behind",
            "Bytes of a tailed file not read yet, as of its last commit (a catch-up after downtime)",
            ["source"],
            registry=r,
        )
        Gauge("syncwatch_info", "The running version", ["version"], registry=r).labels(_version()).set(1)
        r.register(StoreFigures(store))

    def ingested(self, source: str, stored: int, redelivered: int, quarantined: int) -> None:
        if stored:
            self.stored.labels(source).inc(stored)
        if redelivered:
            self.redelivered.labels(source).inc(redelivered)
        if quarantined:
            self.quarantined.labels(source).inc(quarantined)

    def refused_unkept(self, source: str) -> None:
        self.unkept.labels(source).inc()

    def tailed(self, source: str, behind: int) -> None:
        self.tail_behind.labels(source).set(max(0, behind))

    def answered(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        self.request_seconds.labels(endpoint).observe(seconds)

    def job_ran(self, job: str, worked: bool | None, seconds: float) -> None:
        """``worked`` None: another `serve` holds the job, so this one skipped it."""
        outcome = "skipped" if worked is None else "ok" if worked else "failed"
        self.job_runs.labels(job, outcome).inc()
        if worked is None:
            return
        self.job_seconds.labels(job).observe(seconds)
        if worked:
            self.job_success.labels(job).set(time.time())

    def exposition(self) -> tuple[bytes, str]:
        """The text format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


SCRAPE_WITHIN_S = 5.0  # Prometheus gives up on a scrape after 10 s by default


class StoreFigures(Collector):
    """Gauges read from the database when scraped. A database that does not answer is reported as
    ``syncwatch_database_up 0`` (and logged), never as a failed scrape: that is when the other
    series matter most."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("syncwatch_database_up", "1 when the database answers, 0 when it does not")
        try:
            figures = self.store.service_gauges(datetime.now(UTC), SCRAPE_WITHIN_S)
        except SQLAlchemyError as err:
            log.warning("metrics: the database does not answer (%s)", err.__class__.__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        backlog = figures.backlog
        yield GaugeMetricFamily(
            "syncwatch_correlation_backlog_observations",
            "Observations stored but not correlated yet (counted up to 10,000)",
            value=backlog.observations,
        )
        waited = (datetime.now(UTC) - backlog.waiting_since).total_seconds() if backlog.waiting_since else 0.0
        yield GaugeMetricFamily(
            "syncwatch_correlation_waiting_seconds",
            "How long the oldest observation not correlated yet has waited (0 when none waits)",
            value=max(0.0, waited),
        )
        unfinished = GaugeMetricFamily(
            "syncwatch_exceptions_unfinished", "Exceptions open or being retried", labels=["category", "status"]
        )
        for (category, status), n in sorted(figures.exceptions.items()):
            unfinished.add_metric([category, status], n)
        yield unfinished
        open_transactions = GaugeMetricFamily(
            "syncwatch_transactions_open", "Open transactions by process and SLA state", labels=["type", "sla_state"]
        )
        for (kind, state), n in sorted(figures.transactions.items()):
            open_transactions.add_metric([kind, state], n)
        yield open_transactions
        undelivered = GaugeMetricFamily(
            "syncwatch_alerts_undelivered",
            "Alerts the webhook has not accepted: still being tried, or given up on",
            labels=["delivery"],
        )
        undelivered.add_metric(["waiting"], figures.alerts_waiting)
        undelivered.add_metric(["given_up"], figures.alerts_given_up)
        yield undelivered
        heard = GaugeMetricFamily(
            "syncwatch_system_last_seen_timestamp_seconds",
            "When each system's latest observation began",
            labels=["system"],
        )
        quiet = GaugeMetricFamily(
            "syncwatch_system_quiet",
            "1 when a system stopped sending while it was busy in the same hours a day earlier",
            labels=["system"],
        )
        for system, last in sorted(figures.last_seen.items()):
            heard.add_metric([system], last.timestamp())
            quiet.add_metric([system], 1 if system in figures.quiet else 0)
        yield heard
        yield quiet
        circuit = GaugeMetricFamily(
            "syncwatch_partner_circuit_open",
            "1 while a partner's automatic retries are held after it failed them in a row (one probe per cool-down)",
            labels=["partner"],
        )
        changed = GaugeMetricFamily(
            "syncwatch_partner_circuit_changed_timestamp_seconds",
            "When a partner's circuit last opened or closed",
            labels=["partner"],
        )
        for partner, (is_open, since) in sorted(figures.circuits.items()):
            circuit.add_metric([partner], 1 if is_open else 0)
            changed.add_metric([partner], since.timestamp())
        yield circuit
        yield changed


def _version() -> str:
    try:
        return version("syncwatch")
    except PackageNotFoundError:
        return "unknown"
