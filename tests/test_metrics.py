"""Metrics, read back two ways: an injected in-memory meter provider, and a real Prometheus scrape."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client.parser import text_string_to_metric_families

from smallguard.server.assembly import create_server
from smallguard.server.observability.instruments import CONFIDENCE_BUCKETS, DURATION_BUCKETS, NO_REASON, GuardMetrics
from smallguard.server.observability.telemetry import chosen_exporters, configure_metrics, scrape_host
from smallguard.server.settings import Settings
from smallguard.v1 import guard_pb2 as pb
from smallguard.v1 import guard_pb2_grpc
from tests.conftest import MODELS, digits_request, digits_rows, free_port, serving


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Data points by instrument name."""
    found: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def by(points_: list[Any], *keys: str) -> Counter:
    """Sum (counters) or count (histograms) per value of ``keys``."""
    totals: Counter = Counter()
    for point in points_:
        key = tuple(point.attributes[k] for k in keys)
        totals[key if len(keys) > 1 else key[0]] += point.count if hasattr(point, "count") else point.value
    return totals


def traffic(stub: guard_pb2_grpc.GuardStub) -> tuple[list[pb.PredictResponse], Counter]:
    """Escalations (labels outside the allowed 0,1), unconstrained calls, a passing check, and three
    rejected calls; returns the answers and the rejected calls' status names."""
    rows = digits_rows()
    others = [row for row in rows if row["label"] not in ("0", "1")]
    requests = [digits_request(row["pixels"], context={"allowed_labels": "0,1"}) for row in others[:4]]
    requests += [digits_request(row["pixels"]) for row in rows[:6]]
    requests += [digits_request(rows[0]["pixels"], context={"allowed_labels": rows[0]["label"]})]
    responses = [stub.Predict(request) for request in requests]
    rejected: Counter = Counter()
    for bad in (digits_request(rows[0]["pixels"][:63]),                      # known model, bad shape
                pb.PredictRequest(model="no-such-model"),
                digits_request([float("nan")] * 64)):
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(bad)
        rejected[caught.value.code().name] += 1
    with pytest.raises(grpc.RpcError):  # not a Predict: not counted
        stub.GetModel(pb.GetModelRequest(name="no-such-model"))
    return responses, rejected


def expected(responses: list[pb.PredictResponse]) -> dict[str, Counter]:
    decisions = Counter(pb.Decision.Name(r.decision) for r in responses)
    primary = Counter((pb.Decision.Name(r.decision), pb.Reason.Code.Name(r.reasons[0].code) if r.reasons
                       else NO_REASON) for r in responses)
    reasons = Counter(code for r in responses for code in {pb.Reason.Code.Name(x.code) for x in r.reasons})
    verifiers = Counter((v.name, pb.VerifierResult.Status.Name(v.status).lower()) for r in responses
                        for v in r.verifiers)
    return {"decisions": decisions, "primary": primary, "reasons": reasons, "verifiers": verifiers}


@pytest.mark.e2e
def test_an_injected_meter_provider_sees_every_prediction_verifier_and_rejection() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    settings = Settings(host="127.0.0.1", port=0, model_repository=MODELS)
    server = create_server(settings, meter_provider=provider)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            responses, rejected = traffic(guard_pb2_grpc.GuardStub(channel))
    finally:
        server.stop(0)
    want = expected(responses)
    # the four outside "0,1" escalate; the others answer or abstain, as the calibration decides
    assert want["decisions"]["ESCALATE"] == 4
    assert want["decisions"]["ANSWER"] + want["decisions"]["ABSTAIN"] == 7
    assert rejected == {"INVALID_ARGUMENT": 2, "NOT_FOUND": 1}

    got = points(reader)
    predictions = got["smallguard.predictions"]
    assert by(predictions, "smallguard.decision") == want["decisions"]
    assert by(predictions, "smallguard.decision", "smallguard.reason") == want["primary"]
    assert by(predictions, "smallguard.model.name", "smallguard.model.version") == {("digits", "1.0.0"): 11}
    assert by(got["smallguard.prediction.reasons"], "smallguard.reason") == want["reasons"]
    assert by(got["smallguard.verifier.outcomes"], "smallguard.verifier.name",
              "smallguard.verifier.status") == want["verifiers"]

    [confidence] = got["smallguard.confidence"]
    assert confidence.count == len(responses)
    assert tuple(confidence.explicit_bounds) == CONFIDENCE_BUCKETS
    assert confidence.sum == pytest.approx(sum(r.confidence for r in responses))
    duration = got["smallguard.predict.duration"]
    assert by(duration, "smallguard.decision") == want["decisions"]
    assert tuple(duration[0].explicit_bounds) == DURATION_BUCKETS
    assert all(0 < p.min <= p.max < 5 for p in duration)

    assert by(got["smallguard.predict.active_requests"], "smallguard.model.name") == {"digits": 0}
    assert by(got["smallguard.predict.errors"], "error.type") == rejected
    provider.shutdown()


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


def test_the_scrape_endpoint_binds_the_grpc_host_once_per_process() -> None:
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


def scrape(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(family: Any, name: str, *labels: str) -> Counter:
    totals: Counter = Counter()
    for sample in family.samples:
        if sample.name == name:
            key = tuple(sample.labels[label] for label in labels)
            totals[key if len(labels) > 1 else key[0]] += sample.value
    return totals


@pytest.mark.e2e
def test_smallguard_serve_exposes_the_counts_to_a_prometheus_scrape() -> None:
    port, metrics_port = free_port(), free_port()
    with (serving(port=port, metrics_port=metrics_port) as process,
          grpc.insecure_channel(f"127.0.0.1:{port}") as channel):
        responses, rejected = traffic(guard_pb2_grpc.GuardStub(channel))
        families = scrape(metrics_port)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    want = expected(responses)

    predictions = families["smallguard_predictions"]
    assert predictions.type == "counter"
    assert samples(predictions, "smallguard_predictions_total", "smallguard_decision") == want["decisions"]
    assert samples(predictions, "smallguard_predictions_total", "smallguard_model_name") == {"digits": 11}
    assert samples(families["smallguard_prediction_reasons"], "smallguard_prediction_reasons_total",
                   "smallguard_reason") == want["reasons"]
    assert samples(families["smallguard_verifier_outcomes"], "smallguard_verifier_outcomes_total",
                   "smallguard_verifier_name", "smallguard_verifier_status") == want["verifiers"]
    assert samples(families["smallguard_predict_duration_seconds"], "smallguard_predict_duration_seconds_count",
                   "smallguard_decision") == want["decisions"]
    assert samples(families["smallguard_confidence"], "smallguard_confidence_count",
                   "smallguard_model_name") == {"digits": len(responses)}
    assert samples(families["smallguard_predict_active_requests"], "smallguard_predict_active_requests",
                   "smallguard_model_name") == {"digits": 0}
    assert samples(families["smallguard_predict_errors"], "smallguard_predict_errors_total",
                   "error_type") == rejected
    assert "process_resident_memory_bytes" in families


def test_each_worker_serves_its_own_metrics_port() -> None:
    port, metrics_port = free_port(), free_port()
    while metrics_port + 1 == port:
        metrics_port = free_port()
    env = {**os.environ, "SMALLGUARD_HOST": "127.0.0.1", "SMALLGUARD_PORT": str(port),
           "SMALLGUARD_METRICS_PORT": str(metrics_port), "SMALLGUARD_WORKERS": "2"}
    with subprocess.Popen([sys.executable, "-m", "smallguard.server.cli", "serve"], env=env, text=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:
        try:
            for worker_port in (metrics_port, metrics_port + 1):
                deadline = time.monotonic() + 60
                while True:
                    try:
                        text = urllib.request.urlopen(f"http://127.0.0.1:{worker_port}/metrics", timeout=5).read()
                        break
                    except OSError:
                        assert time.monotonic() < deadline, f"no metrics on port {worker_port}"
                        time.sleep(0.2)
                assert b"process_resident_memory_bytes" in text
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
