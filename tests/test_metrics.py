"""`serve`'s /metrics: what the collectors took and refused, per source and endpoint, and the
database's figures, which must agree with what the dashboard shows."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from syncwatch.commands.serve import Job, one_at_a_time
from syncwatch.metrics import ServiceMetrics
from syncwatch.store import Store
from syncwatch.store import queries as q
from syncwatch.store.filters import QueueFilter
from syncwatch.store.schema import observations

FIXTURES = Path(__file__).parent / "fixtures"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def scrape(url: str) -> Samples:
    answer = httpx.get(f"{url}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return samples(answer.text)


def test_metrics_count_what_each_endpoint_stored_redelivered_and_refused(run_collector) -> None:  # type: ignore[no-untyped-def]
    collector = run_collector()
    body = (FIXTURES / "otlp" / "oteldesktopviewer_checkout_traces.json").read_bytes()
    traces, as_json = f"{collector.url}/v1/traces", {"content-type": "application/json"}
    assert httpx.post(traces, content=body, headers=as_json).status_code == 200
    assert httpx.post(traces, content=body, headers=as_json).status_code == 200  # a retried export
    assert httpx.post(traces, content=b"{not json", headers=as_json).status_code == 400
    assert httpx.post(traces, content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    assert httpx.post(f"{collector.url}/v1/webhooks/nobody", json={}).status_code == 404
    assert httpx.get(f"{collector.url}/wp-login.php").status_code == 404
    with collector.store.engine.connect() as conn:
        spans = conn.execute(select(func.count()).select_from(observations)).scalar_one()
    assert spans > 0

    found = scrape(collector.url)
    otlp = {"source": "otlp/traces"}
    assert value(found, "syncwatch_observations_stored_total", **otlp) == spans
    assert value(found, "syncwatch_observations_redelivered_total", **otlp) == spans
    assert value(found, "syncwatch_inputs_quarantined_total", **otlp) == 2
    requests = {
        (dict(labels)["endpoint"], dict(labels)["status"]): n
        for (name, labels), n in found.items()
        if name == "syncwatch_requests_total"
    }
    assert requests == {
        ("/v1/traces", "200"): 2,
        ("/v1/traces", "400"): 1,
        ("/v1/traces", "415"): 1,
        ("/v1/webhooks/(unknown)", "404"): 1,
        ("other", "404"): 1,
    }, "a path nobody configured never becomes a label of its own"
    assert value(found, "syncwatch_request_duration_seconds_count", endpoint="/v1/traces") == 4
    assert value(found, "syncwatch_database_up") == 1
    assert value(found, "syncwatch_correlation_backlog_observations") == spans, "nothing correlated them"
    assert value(found, "syncwatch_info", version=version("syncwatch")) == 1

    with collector.store.writing() as conn:
        conn.exec_driver_sql("DROP TABLE checkpoints")
    broken = scrape(collector.url)
    assert value(broken, "syncwatch_database_up") == 0, "a scrape still answers when the database does not"
    assert value(broken, "syncwatch_observations_stored_total", **otlp) == spans
    assert value(broken, "syncwatch_correlation_backlog_observations") is None


def test_the_database_figures_agree_with_the_dashboard(sample_db: str) -> None:
    store = Store.open(sample_db)
    try:
        body, _ = ServiceMetrics(store).exposition()
        found = samples(body.decode())
        open_by_state = q.open_by_sla(store).groupby("sla_state")["transactions"].sum().to_dict()
        unfinished = q.exception_count(store, QueueFilter())
    finally:
        store.close()
    gauges: dict[str, float] = {}
    for (name, labels), n in found.items():
        if name == "syncwatch_transactions_open":
            state = dict(labels)["sla_state"]
            gauges[state] = gauges.get(state, 0) + n
    assert open_by_state and {s: gauges.get(s, 0) for s in open_by_state} == open_by_state
    exceptions = sum(n for (name, _), n in found.items() if name == "syncwatch_exceptions_unfinished")
    assert unfinished > 0 and exceptions == unfinished
    assert value(found, "syncwatch_alerts_undelivered", delivery="waiting") is not None


def test_every_job_run_is_counted_ok_failed_or_skipped(store: Store) -> None:
    metrics = ServiceMetrics(store)

    def failing() -> None:
        raise RuntimeError("partner down")

    one_at_a_time(store, Job("correlate", lambda: None, 1.0), metrics)()
    one_at_a_time(store, Job("tail:access.log", lambda: False, 1.0), metrics)()  # `_logged` caught a failure
    with pytest.raises(RuntimeError):
        one_at_a_time(store, Job("sla", failing, 1.0), metrics)()
    other_instance = Store.open(store.engine.url.render_as_string(hide_password=False))
    try:
        with other_instance.exclusive("job:alerts"):
            one_at_a_time(store, Job("alerts", lambda: None, 1.0), metrics)()
    finally:
        other_instance.close()
    found = samples(metrics.exposition()[0].decode())
    runs = {
        (dict(labels)["job"], dict(labels)["outcome"]): n
        for (name, labels), n in found.items()
        if name == "syncwatch_job_runs_total"
    }
    alerts = ("alerts", "skipped") if store.dialect == "postgresql" else ("alerts", "ok")  # SQLite: one serve
    assert runs == {("correlate", "ok"): 1, ("tail:access.log", "failed"): 1, ("sla", "failed"): 1, alerts: 1}
    succeeded = {
        dict(labels)["job"] for (name, labels) in found if name == "syncwatch_job_last_success_timestamp_seconds"
    }
    assert succeeded == ({"correlate"} if store.dialect == "postgresql" else {"correlate", "alerts"})


def test_each_system_s_last_word_and_its_silence_are_series_to_alert_on(store: Store) -> None:
    from datetime import UTC, datetime, timedelta

    from observation_support import span

    now = datetime.now(UTC).replace(microsecond=0)
    busy_hour_yesterday = [now - timedelta(hours=25) + timedelta(minutes=3 * (i + 1)) for i in range(20)]
    spans = [span(i, "POST /shipments", "3pl-fastship", at) for i, at in enumerate(busy_hour_yesterday)]
    spans += [span(100, "POST /shipments", "3pl-fastship", now - timedelta(hours=1))]
    spans += [span(101, "POST /sales-orders", "erp", now - timedelta(minutes=1))]
    store.write_observations(spans)
    found = samples(ServiceMetrics(store).exposition()[0].decode())
    assert value(found, "syncwatch_system_quiet", system="3pl-fastship") == 1
    assert value(found, "syncwatch_system_quiet", system="erp") == 0
    heard = value(found, "syncwatch_system_last_seen_timestamp_seconds", system="erp")
    assert heard == (now - timedelta(minutes=1)).timestamp()
