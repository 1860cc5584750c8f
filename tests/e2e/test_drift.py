"""Drift end to end: the real server on the shipped digits bundle, scraped by Prometheus' parser.

Held-out data like the calibration data keeps every drift score under its limit; the same images
inverted (16 - pixel: confidently misread, the silent failure drift monitoring is for) push the
scores past it, the model's own health service goes NOT_SERVING while the server stays SERVING,
and GetModel says why. Normal traffic brings it back. With `on_drift: escalate`, answers become
escalations with reason DRIFT while drifted, and only then.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from smallguard.v1 import guard_pb2 as pb
from tests.conftest import DIGITS, Running, copy_bundle, digits_request, digits_rows, free_port, start_server
from tests.e2e.conftest import health, samples, scrape

pytestmark = pytest.mark.e2e

NORMAL = [row["pixels"] for row in digits_rows("test")]
INVERTED = [[16.0 - value for value in pixels] for pixels in NORMAL]
SIGNALS = {"confidence", "escalation_rate", "abstention_rate", "input:pixels"}


def replay(running: Running, images: list[list[float]]) -> list[pb.PredictResponse]:
    return [running.stub.Predict(digits_request(pixels)) for pixels in images]


def drift_metrics(metrics_port: int) -> tuple[dict[str, float], dict[str, float]]:
    """(score, limit) per signal of the digits model, as a Prometheus scrape reads them."""
    families = scrape(metrics_port)
    found = []
    for family, name in (("smallguard_drift_score", "smallguard_drift_score"),
                         ("smallguard_drift_limit", "smallguard_drift_limit")):
        if family not in families:
            found.append({})
            continue
        assert families[family].type == "gauge"
        values = samples(families[family], name, "smallguard_model_name", "smallguard_model_version",
                         "smallguard_drift_signal")
        found.append({signal: value for (model, version, signal), value in values.items()
                      if (model, version) == ("digits", "1.0.0")})
    return found[0], found[1]


def get_drift(running: Running) -> pb.DriftStatus:
    return running.stub.GetModel(pb.GetModelRequest(name="digits")).drift


@pytest.fixture
def shipped_digits(tmp_path: Path) -> Iterator[tuple[Running, int]]:
    """The shipped digits bundle itself (linked, not copied) served with a Prometheus endpoint."""
    repository = tmp_path / "repository"
    repository.mkdir()
    (repository / "digits").symlink_to(DIGITS, target_is_directory=True)
    metrics_port = free_port()
    running = start_server(repository, metrics_port=metrics_port)
    try:
        yield running, metrics_port
    finally:
        running.stop()


def test_shifted_inputs_move_the_drift_scores_past_the_limit_and_the_model_health_follows(
        shipped_digits: tuple[Running, int]) -> None:
    running, metrics_port = shipped_digits
    start = get_drift(running)
    assert start.state == pb.DriftStatus.WARMING_UP and start.samples == 0
    assert (start.window, start.min_samples) == (500, 100) and start.reference.endswith("digits/reference.json")
    scores, limits = drift_metrics(metrics_port)
    assert scores == {} and limits == {"confidence": 0.2, "escalation_rate": 0.1, "abstention_rate": 0.1,
                                       "input:pixels": 0.2}
    assert health(running, "digits") == "SERVING"

    # held-out data drawn like the calibration data: everything within its limit
    replay(running, NORMAL)
    scores, limits = drift_metrics(metrics_port)
    assert set(scores) == SIGNALS
    assert all(scores[s] < limits[s] for s in SIGNALS), scores
    assert health(running, "digits") == "SERVING"
    status = get_drift(running)
    assert status.state == pb.DriftStatus.WITHIN_LIMITS and status.samples == len(NORMAL)
    assert {s.signal: s.score for s in status.scores} == pytest.approx(scores, rel=1e-9, abs=1e-12)

    # the same digits inverted: the model still answers, mostly with high confidence, but drift says so
    responses = replay(running, INVERTED)
    assert sum(r.decision == pb.ANSWER for r in responses) > len(responses) / 2
    assert all(pb.Reason.DRIFT not in [reason.code for reason in r.reasons] for r in responses)  # on_drift: none
    scores, limits = drift_metrics(metrics_port)
    assert scores["input:pixels"] > limits["input:pixels"] and scores["confidence"] > limits["confidence"]
    assert health(running, "digits") == "NOT_SERVING"
    assert health(running, "") == "SERVING" and health(running, "smallguard.v1.Guard") == "SERVING"
    status = get_drift(running)
    assert status.state == pb.DriftStatus.DRIFTED and status.samples == 500 and not status.escalate_when_drifted
    past = {s.signal for s in status.scores if s.past_limit}
    assert {"input:pixels", "confidence"} <= past
    assert status.message.startswith("drifted over the last 500 predictions: ") and "input:pixels" in status.message
    assert running.stub.Predict(digits_request(NORMAL[0])).decision  # still served

    # a full window of normal traffic again: back within limits, and SERVING
    replay(running, (NORMAL + NORMAL)[:500])
    scores, limits = drift_metrics(metrics_port)
    assert all(scores[s] < limits[s] for s in SIGNALS), scores
    assert health(running, "digits") == "SERVING"
    assert get_drift(running).state == pb.DriftStatus.WITHIN_LIMITS


def test_on_drift_escalate_turns_answers_into_drift_escalations_while_drifted(tmp_path: Path) -> None:
    bundle_yaml = (DIGITS / "bundle.yaml").read_text().replace("on_drift: none", "on_drift: escalate")
    copy_bundle(DIGITS, tmp_path, "digits", bundle_yaml, extra=("reference.json",))
    running = start_server(tmp_path)
    try:
        normal = replay(running, NORMAL)
        assert get_drift(running).escalate_when_drifted
        assert not [r for r in normal if any(reason.code == pb.Reason.DRIFT for reason in r.reasons)]
        answered = sum(r.decision == pb.ANSWER for r in normal)
        assert answered > 0.7 * len(normal)

        shifted = replay(running, INVERTED)
        drifting = [i for i, r in enumerate(shifted) if r.reasons and r.reasons[0].code == pb.Reason.DRIFT]
        assert len(drifting) > len(shifted) / 2
        first = drifting[0]
        assert all(r.decision != pb.ANSWER for r in shifted[first:])  # from then on nothing is answered
        example = shifted[drifting[-1]]
        assert example.decision == pb.ESCALATE and example.reasons[0].message.startswith("drifted over the last ")
        assert health(running, "digits") == "NOT_SERVING"

        # its own escalations are not counted as drift: once a window of normal traffic has pushed the
        # inverted images out, the answers come back
        replay(running, (NORMAL + NORMAL)[:500])
        assert get_drift(running).state == pb.DriftStatus.WITHIN_LIMITS
        assert health(running, "digits") == "SERVING"
        after = replay(running, NORMAL[:100])
        assert not [r for r in after if any(reason.code == pb.Reason.DRIFT for reason in r.reasons)]
        assert sum(r.decision == pb.ANSWER for r in after) > 70
    finally:
        running.stop()


def test_an_unknown_health_service_is_still_unknown(shipped_digits: tuple[Running, int]) -> None:
    running, _ = shipped_digits
    with pytest.raises(grpc.RpcError) as caught:
        health(running, "no-such-model")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
