"""OpenTelemetry set-up from the standard OTEL_* environment variables.

OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name the service, OTEL_TRACES_SAMPLER picks
the sampler, OTEL_EXPORTER_OTLP_* configure the OTLP exporter and OTEL_BSP_* the batching;
the SDK reads all of those itself. Here only the exporter is chosen: OTEL_TRACES_EXPORTER
(otlp, console, none; comma-separated) when set, otherwise OTLP when an endpoint is
configured and no exporter at all when not, so a bare `smallguard serve` neither fails to
connect nor floods the terminal.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

log = logging.getLogger(__name__)


def chosen_exporters(environ: Mapping[str, str]) -> list[str]:
    named = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if named:
        chosen = [name.strip().lower() for name in named.split(",") if name.strip()]
        return [] if chosen == ["none"] else chosen
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return ["otlp"] if endpoint else []


def configure_tracing(environ: Mapping[str, str] | None = None) -> TracerProvider:
    """Install the global tracer provider; return it so the caller can flush it at shutdown."""
    environ = os.environ if environ is None else environ
    provider = TracerProvider(resource=Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME",
                                                                                    "smallguard")}))
    for name in chosen_exporters(environ):
        provider.add_span_processor(BatchSpanProcessor(_exporter(name, environ)))
        log.info("tracing: exporting spans with the %s exporter", name)
    trace.set_tracer_provider(provider)
    return provider


def _exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    if name == "otlp":
        protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"))
        if protocol != "grpc":
            raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported; this server exports "
                             "OTLP over gRPC (protocol 'grpc')")
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        return ConsoleSpanExporter()
    raise ValueError(f"OTEL_TRACES_EXPORTER={name!r} is not supported; expected otlp, console or none")
