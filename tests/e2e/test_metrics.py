"""Metrics, read back two ways: an injected in-memory meter provider, and a real Prometheus scrape."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter

import grpc
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from smallguard.server.assembly import create_server
from smallguard.server.observability.instruments import CONFIDENCE_BUCKETS, DURATION_BUCKETS, NO_REASON
from smallguard.server.settings import Settings
from smallguard.v1 import guard_pb2 as pb
from smallguard.v1 import guard_pb2_grpc
from tests.conftest import MODELS, by, free_port, points, serving
from tests.e2e.conftest import samples, scrape, traffic


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
    port, metrics_port = free_port(), free_port(following=1)
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
