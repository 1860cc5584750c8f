"""Predict answers written in the wire format (``transport.wire``) are the very bytes upb serializes for the
messages ``converters`` builds: for single answers, batches item by item (errors and answers wire leaves to upb
among them) and batches served over arrays, on generated values."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smallguard.server.domain.errors import InvalidInputError, ModelNotFoundError
from smallguard.server.domain.predictions import (
    BatchOutcome,
    Decision,
    PredictOutcome,
    Reason,
    ReasonCode,
    TierOutcome,
    VerifierOutcome,
)
from smallguard.server.transport import converters, wire
from smallguard.v1 import guard_pb2 as pb
from smallguard.verifiers import ExtractedField, LabelScore, ModelKind, Prediction, Status

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
long_texts = st.one_of(texts, st.text(st.characters(blacklist_categories=("Cs",)), min_size=100, max_size=300))
labels = st.one_of(st.sampled_from(["0", "7", "cat", "", "ünïcødé", "x" * 200]), texts)
doubles = st.one_of(st.sampled_from([0.0, -0.0, 1.0, 0.5, 1e-300, 5e-324, math.inf, -math.inf, math.nan]),
                    st.floats(allow_nan=True, allow_infinity=True))
reasons = st.lists(st.builds(Reason, st.sampled_from(list(ReasonCode)), long_texts, texts), max_size=3).map(tuple)
verifiers = st.lists(st.builds(VerifierOutcome, texts, texts, st.sampled_from(list(Status)), long_texts,
                               st.sampled_from(list(Decision)), doubles), max_size=3).map(tuple)
classifications = st.builds(
    lambda label, probability, top: Prediction(kind=ModelKind.CLASSIFIER, label=label, probability=probability,
                                               top_k=tuple(LabelScore(name, p) for name, p in top)),
    labels, doubles, st.lists(st.tuples(labels, doubles), max_size=4))
SAME_EVERY_RUN = settings(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
request_ids = st.one_of(st.sampled_from(["r-1", "0193a3c5-7a1e-7c2b-9f3e-123456789abc", "é" * 70]), texts)


@st.composite
def outcomes(draw: st.DrawFn, prediction: st.SearchStrategy[Prediction] = classifications) -> PredictOutcome:
    return PredictOutcome(draw(request_ids), draw(st.sampled_from(["digits", "", "m" * 150])),
                          draw(st.sampled_from(["", "2", "v" * 130])), draw(st.sampled_from(list(Decision))),
                          draw(prediction), draw(doubles), draw(doubles), draw(doubles), draw(reasons),
                          draw(verifiers), draw(st.sampled_from(["", "0af7651916cd43dd8448eb211c80319c"])),
                          answered_by=draw(st.sampled_from(["", "digits", "bigger"])))


def serialized(outcome: PredictOutcome) -> bytes:
    return converters.predict_response(outcome).SerializeToString()


@settings(SAME_EVERY_RUN, max_examples=400)
@given(outcomes())
def test_an_answer_is_the_bytes_upb_serializes(outcome: PredictOutcome) -> None:
    assert wire.predict_response_bytes(outcome) == serialized(outcome)
    assert wire.predict_response_bytes(outcome) == serialized(outcome)  # again, from what was kept of the first


def test_an_answer_left_to_upb_is_the_same_bytes_too() -> None:
    extraction = Prediction(kind=ModelKind.EXTRACTOR, fields={
        "total": ExtractedField("total", "12.50", 0.9, 0.8), "tax": ExtractedField("tax", None, 0.0, 0.1)})
    small = Prediction(kind=ModelKind.CLASSIFIER, label="3", probability=0.4, top_k=(LabelScore("3", 0.4),))
    tier = TierOutcome("model", "model", Decision.ESCALATE, small, True, 0.4, 0.5, 0.9, (), (), 1.5, 0.0, 0)
    cascaded = PredictOutcome("r-2", "digits", "", Decision.ANSWER, small, 0.95, 0.95, 0.9, (), (), "",
                              (tier, tier), "bigger", 2.5, 7)
    for outcome in (PredictOutcome("r-1", "invoice", "", Decision.ANSWER, extraction, 0.9, 0.8, 0.5, (), ()),
                    cascaded):
        assert wire.predict_response_bytes(outcome) == serialized(outcome)
        assert pb.PredictResponse.FromString(wire.predict_response_bytes(outcome)) == converters.predict_response(
            outcome)


@settings(SAME_EVERY_RUN, max_examples=150)
@given(st.lists(st.one_of(outcomes(), st.sampled_from([
    InvalidInputError("3 values; shape [64] needs 64", "inputs[pixels].contents.float_contents"),
    ModelNotFoundError("no model 'x'")])), max_size=6), st.data())
def test_a_batch_item_by_item_is_the_bytes_upb_serializes(results: list, data: st.DataObject) -> None:
    if len(results) > 1 and data.draw(st.booleans()):  # items answered alike share their outcomes' tuples
        first = next((r for r in results if isinstance(r, PredictOutcome)), None)
        for result in results:
            if first is not None and isinstance(result, PredictOutcome):
                result.reasons, result.verifiers = first.reasons, first.verifiers
    expected = pb.PredictBatchResponse()
    expected_errors: list[str] = []
    for index, result in enumerate(results):
        if isinstance(result, PredictOutcome):
            expected.results.add().response.CopyFrom(converters.predict_response(result))
        else:
            code = converters.status_of(result).name
            expected_errors.append(code)
            expected.results.add(error=pb.ItemError(code=code, message=f"items[{index}].{result}"))
    errors: list[str] = []
    assert wire.batch_results_bytes(results, errors.append) == expected.SerializeToString()
    assert errors == expected_errors


@settings(SAME_EVERY_RUN, max_examples=150)
@given(st.lists(st.tuples(request_ids, st.sampled_from(list(Decision)), classifications, doubles, doubles,
                          st.integers(0, 2)), min_size=1, max_size=8),
       st.lists(st.tuples(reasons, verifiers), min_size=3, max_size=3),
       st.sampled_from(["digits", "m" * 150]), st.sampled_from(["", "2"]), doubles,
       st.sampled_from(["", "0af7651916cd43dd8448eb211c80319c"]))
def test_a_batch_over_arrays_is_the_bytes_upb_serializes(items: list, shared: list, model: str, version: str,
                                                          threshold: float, trace_id: str) -> None:
    """Each item answered as the PredictOutcome it would have had alone; items share reasons and verifier tuples
    as the array path shares them."""
    batch = BatchOutcome(model, version, threshold, trace_id, [i[0] for i in items], [i[1] for i in items],
                         [i[2] for i in items], [i[3] for i in items], [i[4] for i in items],
                         [shared[i[5]][0] for i in items], [shared[i[5]][1] for i in items])
    expected = pb.PredictBatchResponse()
    for i, (request_id, decision, prediction, confidence, raw_confidence, _shared) in enumerate(items):
        alone = PredictOutcome(request_id, model, version, decision, prediction, confidence, raw_confidence,
                               threshold, batch.reasons[i], batch.verifiers[i], trace_id)
        expected.results.add().response.CopyFrom(converters.predict_response(alone))
    assert wire.stacked_results_bytes(batch) == expected.SerializeToString()


def test_what_is_kept_is_bounded_and_forgetting_it_changes_no_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "_KEPT", 3)
    answers = [PredictOutcome(f"r-{i}", f"model-{i % 5}", "", Decision.ANSWER,
                              Prediction(kind=ModelKind.CLASSIFIER, label=str(i), probability=0.9,
                                         top_k=(LabelScore(str(i), 0.9), LabelScore(str(i + 1), 0.1))),
                              0.9, 0.8, 0.5, (), (VerifierOutcome("v", "label-allowed", Status.PASSED, f"m{i}",
                                                                  Decision.ESCALATE, 0.01),)) for i in range(20)]
    for outcome in answers + answers:
        assert wire.predict_response_bytes(outcome) == serialized(outcome)
    assert len(wire._labels) <= 3 and len(wire._heads) <= 3 and len(wire._checks) <= 3


def test_a_long_answer_takes_lengths_of_several_bytes() -> None:
    """A verifier message of 20,000 characters: lengths past the table of short ones (three-byte varints)."""
    outcome = PredictOutcome("r", "digits", "", Decision.ESCALATE,
                             Prediction(kind=ModelKind.CLASSIFIER, label="1", probability=0.2, top_k=()),
                             0.2, 0.3, 0.5, (Reason(ReasonCode.VERIFIER_FAILED, "é" * 20_000, "v"),),
                             (VerifierOutcome("v", "rule", Status.FAILED, "x" * 20_000, Decision.ESCALATE, 1.0),))
    assert wire.predict_response_bytes(outcome) == serialized(outcome)
    assert wire.batch_results_bytes([outcome], lambda code: None) == pb.PredictBatchResponse(
        results=[pb.PredictBatchResult(response=converters.predict_response(outcome))]).SerializeToString()


def test_a_verifier_message_that_quotes_the_caller_at_length_is_written_but_not_kept() -> None:
    """A message may repeat the caller's context (label-allowed lists the labels it was given): one longer than a
    few hundred bytes is encoded for its answer alone, so callers cannot make the server hold what they sent."""
    wire._checks.clear()
    for i in range(3):
        quoted = f"label '3' is not allowed by context 'allowed_labels': {str(i) * 100_000}"
        outcome = PredictOutcome(f"r-{i}", "digits", "", Decision.ESCALATE,
                                 Prediction(kind=ModelKind.CLASSIFIER, label="3", probability=0.9, top_k=()),
                                 0.9, 0.9, 0.5, (Reason(ReasonCode.VERIFIER_FAILED, quoted, "allowed"),),
                                 (VerifierOutcome("allowed", "label-allowed", Status.FAILED, quoted,
                                                  Decision.ESCALATE, 0.01),))
        assert wire.predict_response_bytes(outcome) == serialized(outcome)
    assert sum(len(start) for start in wire._checks.values()) == 0
