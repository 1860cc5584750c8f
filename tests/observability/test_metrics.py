"""Metrics without a network: the instruments read back through an injected in-memory meter provider,
the standard exporter variables, and the scrape endpoint's binding rules."""

from __future__ import annotations

import socket

import pytest
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from smallguard.server.observability import telemetry
from smallguard.server.observability.instruments import GuardMetrics
from smallguard.server.observability.telemetry import chosen_exporters, configure_metrics, scrape_host
from smallguard.server.settings import Settings
from tests.conftest import free_port, points


def test_in_flight_counts_a_prediction_until_it_ends_however_it_ends() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics = GuardMetrics.from_provider(provider)

    def in_flight() -> int:
        return sum(p.value for p in points(reader)["smallguard.predict.active_requests"])

    with metrics.in_flight("digits", "1.0.0"):
        assert in_flight() == 1
    with pytest.raises(ValueError), metrics.in_flight("digits", "1.0.0"):
        assert in_flight() == 1
        raise ValueError("bad input")
    assert in_flight() == 0
    provider.shutdown()


def test_without_a_meter_the_instruments_record_nothing_and_cost_nothing() -> None:
    metrics = GuardMetrics()
    with metrics.in_flight("digits", "1.0.0"):
        metrics.record_error("INVALID_ARGUMENT")
    assert configure_metrics(Settings(), environ={}) is None


def test_exporters_follow_the_standard_variables() -> None:
    assert chosen_exporters({}, "metrics") == []
    assert chosen_exporters({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, "metrics") == ["otlp"]
    assert chosen_exporters({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4317"}, "metrics") == ["otlp"]
    assert chosen_exporters({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4317"}, "metrics") == []
    assert chosen_exporters({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_METRICS_EXPORTER": "none"},
                            "metrics") == []
    assert chosen_exporters({"OTEL_METRICS_EXPORTER": "Prometheus, console"}, "metrics") == ["prometheus", "console"]
    with pytest.raises(ValueError, match="OTEL_METRICS_EXPORTER='zipkin'"):
        configure_metrics(Settings(), environ={"OTEL_METRICS_EXPORTER": "zipkin"})
    with pytest.raises(ValueError, match="'http/protobuf' is not supported"):
        configure_metrics(Settings(), environ={"OTEL_METRICS_EXPORTER": "otlp",
                                               "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf"})
    export = configure_metrics(Settings(), environ={"OTEL_METRICS_EXPORTER": "console"})
    assert export is not None and export.scrape_address is None
    export.shutdown()


def test_exemplars_are_sampled_only_for_an_exporter_that_sends_them() -> None:
    """The Prometheus endpoint drops exemplars, so a Prometheus-only provider samples none; an exporter that sends
    them on, or the operator's OTEL_METRICS_EXEMPLAR_FILTER, keeps the SDK's choice."""
    assert isinstance(telemetry._exemplars([], {})["exemplar_filter"], AlwaysOffExemplarFilter)
    assert isinstance(telemetry._exemplars(["prometheus"], {})["exemplar_filter"], AlwaysOffExemplarFilter)
    assert telemetry._exemplars(["prometheus", "otlp"], {}) == {}
    assert telemetry._exemplars(["console"], {}) == {}
    assert telemetry._exemplars([], {"OTEL_METRICS_EXEMPLAR_FILTER": "always_on"}) == {}


def test_the_scrape_endpoint_binds_loopback_unless_told_otherwise() -> None:
    """The gRPC port may face the world; the metrics endpoint (plain HTTP, telling how the models behave) binds
    127.0.0.1 unless --metrics-host says otherwise."""
    assert Settings(host="[::]").metrics_host == "127.0.0.1"
    port = free_port()
    export = configure_metrics(Settings(host="[::]", metrics_port=port), environ={})
    assert export is not None
    try:
        assert export.scrape_address == ("127.0.0.1", port)
    finally:
        export.shutdown()


def test_the_scrape_endpoint_binds_the_metrics_host_once_per_process() -> None:
    assert scrape_host("[::]") == "0.0.0.0"
    assert scrape_host("0.0.0.0") == "0.0.0.0"
    assert scrape_host("127.0.0.1") == "127.0.0.1"
    assert scrape_host("[::1]") == "::1"
    port = free_port()
    export = configure_metrics(Settings(host="127.0.0.1", metrics_port=port), environ={})
    assert export is not None
    try:
        assert export.scrape_address == ("127.0.0.1", port)
        with pytest.raises(RuntimeError, match="one Prometheus endpoint per process"):
            configure_metrics(Settings(host="127.0.0.1", metrics_port=free_port()), environ={})
    finally:
        export.shutdown()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match="each worker process needs a metrics port of its own"):
            configure_metrics(Settings(host="127.0.0.1", metrics_port=taken.getsockname()[1]), environ={})
    # a failed start leaves the process free to open its endpoint
    configure_metrics(Settings(host="127.0.0.1", metrics_port=free_port()), environ={}).shutdown()  # type: ignore[union-attr]
