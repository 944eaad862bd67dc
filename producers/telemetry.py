"""OpenTelemetry set-up for a producer process.

Spans (connect, login, IDLE wake-up, fetch, publish) carry tenant and mailbox attributes; the
publish span's W3C trace context travels to consumers in each Kafka record's headers.
`IDLEWIRE_TRACES=console` prints finished spans; `IDLEWIRE_METRICS=console` prints the metrics
below every `IDLEWIRE_METRICS_INTERVAL_MS` (an OTLP exporter can be added the same way).

Metrics carry tenant and email type, not the mailbox id, to keep cardinality bounded:
- `idlewire.mail.published` (counter): NewMailDetected events acknowledged by Kafka;
- `idlewire.connection.transitions` (counter, attribute `state`);
- `idlewire.mail.detection_delay` (histogram, ms): INTERNALDATE to detection, coarse (seconds
  resolution of INTERNALDATE) but it shows mailboxes that lag.
"""

from __future__ import annotations

import os

from opentelemetry import metrics, propagate, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

meter = metrics.get_meter("idlewire.producer")
MAIL_PUBLISHED = meter.create_counter("idlewire.mail.published", unit="{mail}")
TRANSITIONS = meter.create_counter("idlewire.connection.transitions", unit="{transition}")
DETECTION_DELAY = meter.create_histogram("idlewire.mail.detection_delay", unit="ms")


def setup_metrics(service_name: str, instance_id: str) -> MeterProvider | None:
    mode = os.environ.get("IDLEWIRE_METRICS", "").lower()
    if mode in ("", "none", "off"):
        return None
    if mode != "console":
        raise ValueError(f"IDLEWIRE_METRICS={mode!r}: only 'console' or 'none' are supported")
    interval = int(os.environ.get("IDLEWIRE_METRICS_INTERVAL_MS", "60000"))
    reader = PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=interval)
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create(
            {"service.name": service_name, "service.instance.id": instance_id}
        ),
    )
    metrics.set_meter_provider(provider)
    return provider


def setup(service_name: str, instance_id: str) -> TracerProvider | None:
    mode = os.environ.get("IDLEWIRE_TRACES", "").lower()
    if mode in ("", "none", "off"):
        return None
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name, "service.instance.id": instance_id})
    )
    if mode == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        raise ValueError(f"IDLEWIRE_TRACES={mode!r}: only 'console' or 'none' are supported")
    trace.set_tracer_provider(provider)
    return provider


def context_headers() -> list[tuple[str, bytes]]:
    """The current span's trace context as Kafka headers (empty when tracing is off)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(k, v.encode()) for k, v in carrier.items()]
