"""OpenTelemetry set-up from the standard OTEL_* environment variables.

OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name the service, OTEL_TRACES_SAMPLER picks
the sampler, OTEL_EXPORTER_OTLP_* configure the OTLP exporter and OTEL_BSP_* the batching;
the SDK reads all of those itself. Here only the exporter is chosen: OTEL_TRACES_EXPORTER
(otlp, console, none; comma-separated) when set, otherwise OTLP when an endpoint is
configured and no exporter at all when not, so a bare `smallguard serve` neither fails to
connect nor floods the terminal.

Metrics follow the same rule with OTEL_METRICS_EXPORTER (otlp, prometheus, console, none)
and OTEL_EXPORTER_OTLP_METRICS_ENDPOINT; the SDK reads OTEL_METRIC_EXPORT_INTERVAL and the
OTLP exporter's own variables. ``--metrics-port`` (SMALLGUARD_METRICS_PORT) adds a Prometheus
scrape endpoint on the gRPC server's host. The meter provider is not installed globally:
``assembly.create_server`` hands it to the guard's instruments, and tests inject their own.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from wsgiref.simple_server import WSGIServer

from opentelemetry import trace
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from smallguard.server.observability.histograms import OwnHistograms
from smallguard.server.settings import Settings

log = logging.getLogger(__name__)


def chosen_exporters(environ: Mapping[str, str], signal: str = "traces") -> list[str]:
    """The exporters OTEL_{signal}_EXPORTER names; by default OTLP if an endpoint is set, else none."""
    named = environ.get(f"OTEL_{signal.upper()}_EXPORTER", "").strip()
    if named:
        chosen = [name.strip().lower() for name in named.split(",") if name.strip()]
        return [] if chosen == ["none"] else chosen
    endpoint = (environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
                or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    return ["otlp"] if endpoint else []


def _resource(environ: Mapping[str, str]) -> Resource:
    return Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME", "smallguard")})


def configure_tracing(environ: Mapping[str, str] | None = None) -> TracerProvider | None:
    """Install the global tracer provider when some exporter is chosen, and return it so the caller can
    flush it at shutdown. With none, nothing is installed: spans that nobody exports are not built. The
    provider is the SDK's with lean spans (``lean_spans``): the same spans at about half the cost, where a
    check at start-up finds the installed SDK fits them."""
    environ = os.environ if environ is None else environ
    chosen = chosen_exporters(environ)
    if not chosen:
        return None
    provider = _provider(_resource(environ))
    for name in chosen:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name, environ)))
        log.info("tracing: exporting spans with the %s exporter", name)
    trace.set_tracer_provider(provider)
    return provider


def _provider(resource: Resource) -> TracerProvider:
    """The lean provider where the installed SDK fits it, else the SDK's (see ``lean_spans.checked_provider``);
    imported here, so that an SDK release without a name it imports costs the lean spans, not the server."""
    try:
        from smallguard.server.observability.lean_spans import checked_provider
    except ImportError as error:
        log.warning("tracing: the lean spans cannot be used with this opentelemetry-sdk (%s); using its own", error)
        return TracerProvider(resource=resource)
    return checked_provider(resource)


def tracing_enabled() -> bool:
    """Whether a real tracer provider is installed (by ``configure_tracing``, or by an embedding program)."""
    return isinstance(trace.get_tracer_provider(), TracerProvider)


def _check_otlp_protocol(environ: Mapping[str, str], signal: str) -> None:
    protocol = environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL",
                           environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"))
    if protocol != "grpc":
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported; this server exports "
                         "OTLP over gRPC (protocol 'grpc')")


def _exporter(name: str, environ: Mapping[str, str]) -> SpanExporter:
    if name == "otlp":
        _check_otlp_protocol(environ, "traces")
        from smallguard.server.observability.span_encoding import LeanOTLPSpanExporter

        return LeanOTLPSpanExporter()
    if name == "console":
        return ConsoleSpanExporter()
    raise ValueError(f"OTEL_TRACES_EXPORTER={name!r} is not supported; expected otlp, console or none")


class MetricsExport:
    """The meter provider ``configure_metrics`` built, and its Prometheus endpoint if any."""

    def __init__(self, provider: MeterProvider, scrape: WSGIServer | None = None,
                 own_histograms: OwnHistograms | None = None) -> None:
        self.provider = provider
        self._scrape = scrape
        self.own_histograms = own_histograms  # the per-prediction histograms, when the endpoint alone reads them

    @property
    def scrape_address(self) -> tuple[str, int] | None:
        """(host, port) of the Prometheus endpoint, None when there is none."""
        return None if self._scrape is None else self._scrape.server_address[:2]

    def shutdown(self) -> None:
        """Stop the endpoint, then flush and stop the exporters."""
        _stop_scrape(self._scrape)
        self._scrape = None
        self.provider.shutdown()


def scrape_host(grpc_host: str) -> str:
    """Where the metrics endpoint binds: ``--metrics-host``, or every IPv4 address for the wildcard ``[::]``."""
    host = grpc_host.strip().removeprefix("[").removesuffix("]")
    return "0.0.0.0" if host in ("", "::", "0.0.0.0") else host


def configure_metrics(settings: Settings, environ: Mapping[str, str] | None = None) -> MetricsExport | None:
    """A meter provider exporting as the environment and ``settings.metrics_port`` ask; None when nothing
    would be exported (the guard then records into the no-op meter)."""
    environ = os.environ if environ is None else environ
    chosen = chosen_exporters(environ, "metrics")
    unknown = [name for name in chosen if name not in ("otlp", "prometheus", "console")]
    if unknown:
        raise ValueError(f"OTEL_METRICS_EXPORTER={unknown[0]!r} is not supported; expected otlp, prometheus, "
                         "console or none")
    if "otlp" in chosen:
        _check_otlp_protocol(environ, "metrics")
    readers: list[MetricReader] = []
    scrape = own_histograms = None
    if settings.metrics_port or "prometheus" in chosen:
        if settings.metrics_port:
            host, port = scrape_host(settings.metrics_host), settings.metrics_port
        else:  # OTEL_METRICS_EXPORTER=prometheus alone: the SDK's own variables, default port 9464
            host = environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", scrape_host(settings.metrics_host))
            port = int(environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464"))
        tls = (settings.tls_cert, settings.tls_key, settings.tls_client_ca) if settings.tls_cert else None
        if _prometheus_alone(chosen):  # the guard aggregates the per-prediction histograms itself
            own_histograms = OwnHistograms()
        reader, scrape = _prometheus(host, port, tls, own_histograms)
        readers.append(reader)
        log.info("metrics: Prometheus endpoint on http://%s:%d/metrics", *scrape.server_address[:2])
    if not readers and not chosen:
        return None
    try:
        for name in chosen:
            if name != "prometheus":
                readers.append(PeriodicExportingMetricReader(_metric_exporter(name)))
                log.info("metrics: exporting with the %s exporter", name)
        provider = MeterProvider(metric_readers=readers, resource=_resource(environ), **_exemplars(chosen, environ))
    except BaseException:
        _stop_scrape(scrape)
        raise
    return MetricsExport(provider, scrape, own_histograms)


def _exemplars(chosen: list[str], environ: Mapping[str, str]) -> dict[str, AlwaysOffExemplarFilter]:
    """No exemplars when only the Prometheus endpoint reads the metrics: its exporter drops them, and sampling
    them cost 4 us per histogram record (two per prediction) while a trace records. The SDK's own choice (trace
    based, or OTEL_METRICS_EXEMPLAR_FILTER) wherever an exporter sends them on."""
    if "OTEL_METRICS_EXEMPLAR_FILTER" in environ or not _prometheus_alone(chosen):
        return {}
    return {"exemplar_filter": AlwaysOffExemplarFilter()}


def _prometheus_alone(chosen: list[str]) -> bool:
    """Whether no exporter but the Prometheus endpoint reads the metrics (``--metrics-port`` adds that endpoint
    without naming it): no exemplars are wanted, and the guard may aggregate its histograms itself."""
    return all(name == "prometheus" for name in chosen)


def _metric_exporter(name: str) -> MetricExporter:
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter()
    return ConsoleMetricExporter()


# One Prometheus endpoint per process: a second one would serve the same instruments again.
_scrape_lock = threading.Lock()
_scrape_in_process: tuple[str, int] | None = None


def _prometheus(host: str, port: int, tls: tuple[str, str, str] | None = None,
                own_histograms: OwnHistograms | None = None) -> tuple[MetricReader, WSGIServer]:
    """A reader and the HTTP endpoint that serves it, in a registry of its own (with the process's
    CPU, memory and GC metrics). ``tls``: (certificate, key, client CA): HTTPS with the gRPC port's certificate,
    and client certificates from that CA required when one is given (read once, at start-up). ``own_histograms``:
    histograms the guard aggregates itself, handed to the reader at each scrape."""
    global _scrape_in_process
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.gc_collector import GCCollector
    from prometheus_client.platform_collector import PlatformCollector
    from prometheus_client.process_collector import ProcessCollector

    from smallguard.server.observability.prometheus_reader import GuardPrometheusReader

    with _scrape_lock:
        if _scrape_in_process is not None:
            raise RuntimeError(f"this process already serves metrics on {_scrape_in_process[0]}:"
                               f"{_scrape_in_process[1]}; one Prometheus endpoint per process")
        registry = CollectorRegistry()
        try:
            secure = {} if tls is None else {"certfile": tls[0], "keyfile": tls[1], "client_cafile": tls[2] or None,
                                             "client_auth_required": bool(tls[2])}
            scrape, _thread = start_http_server(port, addr=host, registry=registry, **secure)
        except OSError as exc:
            raise OSError(f"metrics port {port} on {host}: {exc.strerror or exc} (with --workers N, each worker "
                          "process needs a metrics port of its own)") from exc
        _scrape_in_process = scrape.server_address[:2]
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    reader = (PrometheusMetricReader(registry=registry) if own_histograms is None
              else GuardPrometheusReader(own_histograms, registry=registry))
    return reader, scrape


def _stop_scrape(scrape: WSGIServer | None) -> None:
    global _scrape_in_process
    if scrape is None:
        return
    scrape.shutdown()
    scrape.server_close()
    with _scrape_lock:
        _scrape_in_process = None
