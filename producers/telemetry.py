"""OpenTelemetry set-up for a producer process.

Spans (connect, login, IDLE wake-up, fetch, publish) carry tenant and mailbox attributes; the
publish span's W3C trace context travels to consumers in each Kafka record's headers.
`IDLEWIRE_TRACES=console` prints finished spans (an OTLP exporter can be added the same way).
"""

from __future__ import annotations

import os

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter


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
