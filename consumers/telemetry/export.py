"""The OTLP/HTTP pipeline of the metrics consumer, built only when `otel_endpoint` is set."""

from __future__ import annotations

import logging
from typing import Protocol

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from agentcast.events import AnyEvent, Event
from agentcast.settings import Settings
from consumers.telemetry.genai import SCHEMA_URL
from consumers.telemetry.recorder import GenAiRecorder

logger = logging.getLogger(__name__)

SERVICE_NAME = "agentcast-metrics"


class Telemetry(Protocol):
    def observe(self, event: Event | AnyEvent) -> None: ...


class _Off:
    """No endpoint: events cost one method call."""

    def observe(self, event: Event | AnyEvent) -> None:
        pass


def recorder(span_processor: SpanProcessor, metric_reader: MetricReader) -> GenAiRecorder:
    """A recorder whose spans go to `span_processor` and metrics to `metric_reader`.

    The providers are its own, never the global ones: the process may host
    other instrumentation, and tests build several.
    """
    resource = Resource.create({"service.name": SERVICE_NAME})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(span_processor)
    meter_provider = MeterProvider(resource=resource, metric_readers=[metric_reader])
    return GenAiRecorder(
        tracer_provider.get_tracer(__name__, schema_url=SCHEMA_URL),
        meter_provider.get_meter(__name__, schema_url=SCHEMA_URL),
    )


def telemetry_from(settings: Settings) -> Telemetry:
    """GenAI spans and metrics over OTLP/HTTP to `settings.otel_endpoint`, or nothing.

    The endpoint is the collector's base URL (as OTEL_EXPORTER_OTLP_ENDPOINT):
    `/v1/traces` and `/v1/metrics` are added. The SDK's providers flush at exit.
    """
    endpoint = settings.otel_endpoint
    if not endpoint:
        return _Off()
    # Imported only when used: the exporters bring protobuf and requests.
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    base = endpoint.rstrip("/")
    logger.info("OpenTelemetry GenAI export to %s", base)
    return recorder(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces")),
        PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{base}/v1/metrics")),
    )
