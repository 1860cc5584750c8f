"""Feedback end to end: the real server on the shipped models, its GetModel and its /metrics."""

from __future__ import annotations

import json
import math
import re

import grpc
import pytest
from scipy.stats import binomtest

from smallguard.v1 import guard_pb2 as pb
from tests.conftest import MODELS, Running, digits_request, digits_rows, free_port, start_server
from tests.e2e.conftest import samples, scrape

DIGIT = {"smallguard_model_name": "digits", "smallguard_model_version": "1.0.0"}


def gauge(families: dict, name: str) -> float:
    [sample] = [s for s in families[name].samples if s.name == name and s.labels.items() >= DIGIT.items()]
    return sample.value


def other_label(label: str) -> str:
    return str((int(label) + 1) % 10)


def feed_batch(running: Running, wrong_share: float) -> tuple[list[pb.PredictResponse], list[str]]:
    """Predict every digits test row, then send its truth, except a known share of the answered
    predictions the model got right, which get a deliberately wrong "truth". Returns the responses
    and the truths sent."""
    rows = digits_rows()
    responses = [running.stub.Predict(digits_request(row["pixels"])) for row in rows]
    right_answers = [i for i, (row, r) in enumerate(zip(rows, responses, strict=True))
                     if r.decision == pb.ANSWER and r.classification.label == row["label"]]
    injected = set(right_answers[:max(1, round(wrong_share * len(right_answers)))])
    truths = [other_label(row["label"]) if i in injected else row["label"] for i, row in enumerate(rows)]
    for response, truth in zip(responses, truths, strict=True):
        result = running.stub.Feedback(pb.FeedbackRequest(request_id=response.request_id, model="digits",
                                                          label=truth))
        assert result.correct == (response.classification.label == truth)
        assert result.counted == (response.decision == pb.ANSWER)
        assert (result.decision, result.duplicate) == (response.decision, False)
    return responses, truths


@pytest.mark.e2e
@pytest.mark.parametrize(("wrong_share", "drifts"), [(0.01, False), (0.25, True)])
def test_feedback_on_a_batch_with_known_errors_moves_observed_accuracy_and_reports_the_gap(
        wrong_share: float, drifts: bool) -> None:
    metrics_port = free_port()
    running = start_server(MODELS, metrics_port=metrics_port)
    try:
        responses, truths = feed_batch(running, wrong_share)
        info = running.stub.GetModel(pb.GetModelRequest(name="digits")).feedback
        families = scrape(metrics_port)
    finally:
        running.stop()
    answered = [(r, t) for r, t in zip(responses, truths, strict=True) if r.decision == pb.ANSWER]
    right = sum(r.classification.label == t for r, t in answered)
    observed = right / len(answered)
    estimated = math.fsum(r.confidence for r, _ in answered) / len(answered)

    check = info.accuracy
    assert check.labelled == len(answered) >= info.min_labelled
    assert check.observed == observed
    assert check.estimated == pytest.approx(estimated, rel=1e-12)
    assert check.gap == pytest.approx(observed - estimated, rel=1e-9)
    wilson = binomtest(right, len(answered)).proportion_ci(confidence_level=1 - info.alpha, method="wilson")
    assert (check.observed_low, check.observed_high) == pytest.approx((wilson.low, wilson.high), abs=1e-12)
    # the drift test, recomputed from its definition with the bundle's settings
    significant = not wilson.low <= estimated <= wilson.high
    assert check.significant == significant
    assert info.calibration_drifted == check.drifted == (significant and abs(observed - estimated) > info.tolerance)
    assert info.calibration_drifted is drifts
    assert ("calibration has drifted" in info.explanation) is drifts
    assert info.matched == len(responses)

    assert gauge(families, "smallguard_feedback_accuracy_observed") == observed
    assert gauge(families, "smallguard_feedback_accuracy_estimated") == pytest.approx(estimated, rel=1e-12)
    assert gauge(families, "smallguard_feedback_accuracy_gap") == pytest.approx(observed - estimated, rel=1e-9)
    assert gauge(families, "smallguard_feedback_labelled") == len(answered)
    assert gauge(families, "smallguard_feedback_calibration_drifted") == float(drifts)
    assert samples(families["smallguard_feedback_received"], "smallguard_feedback_received_total",
                   "smallguard_feedback_outcome") == {"matched": len(responses)}


def test_bad_feedback_gets_a_status_and_the_server_keeps_serving() -> None:
    running = start_server(MODELS)
    try:
        rows = digits_rows()[:5]
        ids = [running.stub.Predict(digits_request(row["pixels"])).request_id for row in rows]
        truth = rows[4]["label"]
        first = running.stub.Feedback(pb.FeedbackRequest(request_id=ids[4], label=truth))
        again = running.stub.Feedback(pb.FeedbackRequest(request_id=ids[4], label=truth))
        assert (again.correct, again.duplicate, again.counted) == (first.correct, True, False)
        cases = [
            (pb.FeedbackRequest(request_id="never-made", label="1"), grpc.StatusCode.NOT_FOUND,
             "request_id 'never-made': no decision with this id in the store sqlite"),
            (pb.FeedbackRequest(request_id=ids[3], label="ten"), grpc.StatusCode.INVALID_ARGUMENT,
             "label: 'ten' is not a label of model 'digits'; expected one of 0, 1, 2"),
            (pb.FeedbackRequest(request_id=ids[3], model="invoice-extractor", label="1"),
             grpc.StatusCode.INVALID_ARGUMENT, "model: request '.*' was served by model 'digits'"),
            (pb.FeedbackRequest(request_id=ids[4], label=other_label(truth)), grpc.StatusCode.ALREADY_EXISTS,
             f"feedback was already recorded with label '{truth}'; the first truth stands"),
        ]
        for request, code, message in cases:
            with pytest.raises(grpc.RpcError) as caught:
                running.stub.Feedback(request)
            assert caught.value.code() == code
            assert caught.value.details() is not None
            assert re.search(message, caught.value.details()), caught.value.details()
        # still serving: the next good feedback is matched
        assert running.stub.Feedback(pb.FeedbackRequest(request_id=ids[3], label=rows[3]["label"])).request_id == ids[3]
    finally:
        running.stop()


def test_an_extraction_is_judged_field_by_field() -> None:
    running = start_server(MODELS)
    try:
        lines = (MODELS / "invoice-extractor" / "data" / "test.jsonl").read_text().splitlines()[:20]
        examples = [json.loads(line) for line in lines]
        for example in examples:
            response = running.stub.Predict(pb.PredictRequest(model="invoice-extractor", text=example["text"]))
            truth = {name: value or "" for name, value in example["fields"].items()}
            predicted = {f.name: f.value for f in response.extraction.fields}
            result = running.stub.Feedback(pb.FeedbackRequest(request_id=response.request_id, fields=truth))
            assert list(result.wrong_fields) == [name for name in predicted if predicted[name] != truth[name]]
            assert result.correct == (predicted == truth)
        info = running.stub.GetModel(pb.GetModelRequest(name="invoice-extractor")).feedback
        assert [f.name for f in info.fields] == list(examples[0]["fields"])
        assert info.matched == len(examples)
    finally:
        running.stop()
