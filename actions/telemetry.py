"""Every action is a span from the OpenTelemetry SDK, exported to syncwatch's own collector: over
OTLP/HTTP when ``[actions] otlp_endpoint`` names one, else through the collectors' parser and sink
in this process, so the outcome is stored as observations even when no `serve` is running."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from collectors import otlp
from collectors.otlp_model import TRACES
from collectors.sink import Sink
from syncwatch.config import Config
from syncwatch.store import Store

log = logging.getLogger(__name__)
SYSTEM = "syncwatch"
"""The service.name of action spans: the timeline shows the fix as syncwatch's own calls."""
SOURCE = "actions"


class StoreSpanExporter(SpanExporter):
    """Spans through the same OTLP parser and sink as the collector's HTTP endpoint, in process."""

    def __init__(self, store: Store, config: Config) -> None:
        self.sink = Sink(store, config)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            body = encode_spans(spans).SerializeToString()
            parsed = otlp.parse(TRACES, "protobuf", body, self.sink.context(SOURCE))
            self.sink.commit(parsed, SOURCE, "application/x-protobuf")
        except Exception:  # the telemetry path never raises into the action that made it
            log.exception("could not store %d action spans", len(spans))
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def provider(store: Store, config: Config) -> TracerProvider:
    endpoint = config.file.actions.otlp_endpoint
    exporter: SpanExporter = (
        OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", timeout=5)
        if endpoint
        else StoreSpanExporter(store, config)
    )
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": SYSTEM}))
    tracer_provider.add_span_processor(
        BatchSpanProcessor(exporter, max_queue_size=65_536, max_export_batch_size=512, schedule_delay_millis=200)
    )
    return tracer_provider


def continuing(trace_id: str | None, span_id: str | None) -> Context | None:
    """A context whose parent is the failed call, so the fix joins the failure's trace (and its transaction)."""
    if not trace_id or not span_id:
        return None
    parent = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=TraceFlags(1))
    return set_span_in_context(NonRecordingSpan(parent))
