"""The Feedback core without a network: judging a truth, idempotence, the tally, the gauges.

The models' specs are the shipped bundles' own (read from their bundle.yaml); the ONNX sessions
are not needed, because feedback only reads what a prediction said, so the outcomes are built
here as the guard would have returned them and logged as the guard logs them. Every test runs on
both stores: a SQLite file and a PostgreSQL database.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from smallguard.server.bundle.bundle_file import read_bundle
from smallguard.server.domain.bundle_spec import BundleSpec, FeedbackPolicy
from smallguard.server.domain.errors import FeedbackConflictError, InvalidInputError, RequestNotFoundError
from smallguard.server.domain.predictions import Decision, PredictOutcome
from smallguard.server.observability.feedback import Feedback, FeedbackCall
from smallguard.server.observability.instruments import GuardMetrics
from smallguard.server.store import DecisionLog, open_store
from smallguard.verifiers import ExtractedField, ModelKind, Prediction
from tests.conftest import DIGITS, MODELS, by, points

DIGITS_SPEC = read_bundle(DIGITS)
INVOICE_SPEC = read_bundle(MODELS / "invoice-extractor", require_calibration=False)
INVOICE = {"invoice_number": "INV-7", "date": "2024-03-01", "currency": "EUR", "subtotal": "100.00",
           "tax": "20.00", "total": "120.00"}


class Logged(Feedback):
    """A Feedback over a store, assembled as the server does, that can ``remember`` an outcome as Predict logs it."""

    def __init__(self, specs: tuple[BundleSpec, ...], metrics: GuardMetrics, url: str) -> None:
        store = open_store(url)
        self.log = DecisionLog(store, flush_interval_s=0.01)
        super().__init__({spec.name: spec for spec in specs}, metrics, store, self.log)
        metrics.watch_feedback(self.summaries)

    def remember(self, outcome: PredictOutcome) -> None:
        self.log.append(None, outcome, "none")

    def close(self) -> None:
        self.log.close()
        self.log.store.close()


@pytest.fixture
def collector(store_url: str) -> Iterator[Callable[..., Logged]]:
    made: list[Logged] = []

    def make(*specs: BundleSpec, metrics: GuardMetrics | None = None) -> Logged:
        made.append(Logged(specs, GuardMetrics() if metrics is None else metrics, store_url))
        return made[-1]

    yield make
    for feedback in made:
        feedback.close()


def digit(request_id: str, label: str, confidence: float, decision: Decision = Decision.ANSWER) -> PredictOutcome:
    prediction = Prediction(kind=ModelKind.CLASSIFIER, label=label, probability=confidence)
    return PredictOutcome(request_id, "digits", "1.0.0", decision, prediction, confidence, confidence, 0.9, (), ())


def invoice(request_id: str, values: dict[str, str | None], confidences: dict[str, float],
            document: float) -> PredictOutcome:
    fields = {name: ExtractedField(name, values[name], confidences[name], confidences[name]) for name in values}
    prediction = Prediction(kind=ModelKind.EXTRACTOR, probability=document, fields=fields)
    return PredictOutcome(request_id, INVOICE_SPEC.name, INVOICE_SPEC.version, Decision.ANSWER, prediction,
                          document, document, 0.9, (), ())


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def feedback(reader: InMemoryMetricReader, collector: Callable[..., Logged]) -> Logged:
    metrics = GuardMetrics.from_provider(MeterProvider(metric_readers=[reader]))
    return collector(DIGITS_SPEC, INVOICE_SPEC, metrics=metrics)


def test_a_classifier_prediction_is_right_when_its_label_is_the_truth(feedback: Logged) -> None:
    feedback.remember(digit("a", "3", 0.9))
    feedback.remember(digit("b", "5", 0.8))
    right = feedback.submit(FeedbackCall("a", label="3"))
    wrong = feedback.submit(FeedbackCall("b", model="digits", label="6"))
    assert (right.correct, right.counted, right.duplicate, right.decision) == (True, True, False, Decision.ANSWER)
    assert (wrong.correct, wrong.counted) == (False, True)
    summary = feedback.summary("digits")
    assert (summary.accuracy.labelled, summary.accuracy.observed) == (2, 0.5)
    assert summary.accuracy.estimated == pytest.approx(0.85, abs=1e-15)
    assert summary.accuracy.gap == pytest.approx(-0.35, abs=1e-12)
    assert summary.matched == 2


def test_only_answered_predictions_enter_the_tally(feedback: Logged) -> None:
    feedback.remember(digit("abstained", "3", 0.4, Decision.ABSTAIN))
    feedback.remember(digit("escalated", "3", 0.99, Decision.ESCALATE))
    for request_id in ("abstained", "escalated"):
        result = feedback.submit(FeedbackCall(request_id, label="8"))
        assert (result.correct, result.counted) == (False, False)
    summary = feedback.summary("digits")
    assert (summary.accuracy.labelled, summary.matched) == (0, 2)


def test_the_same_truth_again_is_a_duplicate_and_another_truth_a_conflict(feedback: Logged) -> None:
    feedback.remember(digit("a", "3", 0.9))
    first = feedback.submit(FeedbackCall("a", label="3"))
    again = feedback.submit(FeedbackCall("a", label="3"))
    assert (again.correct, again.counted, again.duplicate) == (first.correct, False, True)
    with pytest.raises(FeedbackConflictError, match="'a': feedback was already recorded with label '3'"):
        feedback.submit(FeedbackCall("a", label="4"))
    assert feedback.summary("digits").accuracy.labelled == 1


def test_a_truth_that_does_not_fit_the_model_is_invalid_and_names_what_was_expected(feedback: Logged) -> None:
    feedback.remember(digit("a", "3", 0.9))
    feedback.remember(invoice("inv", INVOICE, dict.fromkeys(INVOICE, 0.9), 0.8))
    cases = [
        (FeedbackCall("a", label="eleven"), "label: 'eleven' is not a label of model 'digits'; expected one of 0, 1"),
        (FeedbackCall("a", model="other", label="3"), "model: request 'a' was served by model 'digits', not 'other'"),
        (FeedbackCall("a", fields={"total": "1"}), "fields: model 'digits' is a classifier"),
        (FeedbackCall("inv", label="3"), "label: model 'invoice-extractor' is an extractor"),
        (FeedbackCall("inv", fields={**INVOICE, "iban": "x"}),
         r"fields\[iban\]: .*expected fields invoice_number, date"),
        (FeedbackCall("inv", fields={"total": "120.00"}),
         "fields: missing invoice_number, date, currency, subtotal, tax"),
        (FeedbackCall("", label="3"), "request_id: required"),
    ]
    for call, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            feedback.submit(call)
    # none of them was recorded: the right truth is still accepted
    assert feedback.submit(FeedbackCall("a", label="3")).correct


def test_an_unknown_id_is_not_found(feedback: Logged) -> None:
    with pytest.raises(RequestNotFoundError, match="'missing': no decision with this id in the store"):
        feedback.submit(FeedbackCall("missing", label="3"))


def test_an_extraction_is_right_when_every_field_matches_exactly(feedback: Logged) -> None:
    confidences = {"invoice_number": 0.99, "date": 0.95, "currency": 0.9, "subtotal": 0.8, "tax": 0.7, "total": 0.6}
    feedback.remember(invoice("right", {**INVOICE, "tax": None}, confidences, 0.5))
    feedback.remember(invoice("wrong", {**INVOICE, "total": "120.0"}, confidences, 0.4))
    right = feedback.submit(FeedbackCall("right", fields={**INVOICE, "tax": ""}))  # truly no tax on it
    wrong = feedback.submit(FeedbackCall("wrong", fields=INVOICE))
    assert (right.correct, right.wrong_fields) == (True, ())
    assert (wrong.correct, wrong.wrong_fields) == (False, ("total",))
    summary = feedback.summary("invoice-extractor")
    assert (summary.accuracy.labelled, summary.accuracy.observed) == (2, 0.5)
    assert summary.accuracy.estimated == pytest.approx(0.45, abs=1e-15)
    fields = dict(summary.fields)
    assert list(fields) == list(INVOICE_SPEC.fields)
    assert (fields["total"].observed, fields["total"].estimated) == (0.5, 0.6)
    assert (fields["tax"].observed, fields["tax"].estimated) == (1.0, 0.7)


def test_the_tally_slides_over_the_bundle_window(collector: Callable[..., Logged]) -> None:
    small = replace(DIGITS_SPEC, feedback=FeedbackPolicy(tolerance=0.05, alpha=0.05, min_labelled=2, window=3))
    feedback = collector(small)
    for i, (truth, confidence) in enumerate([("0", 0.9), ("0", 0.9), ("3", 0.5), ("3", 0.6), ("3", 0.7)]):
        feedback.remember(digit(f"r{i}", "3", confidence))
        feedback.submit(FeedbackCall(f"r{i}", label=truth))
    summary = feedback.summary("digits")
    assert (summary.accuracy.labelled, summary.accuracy.observed, summary.matched) == (3, 1.0, 5)
    assert summary.accuracy.estimated == pytest.approx(0.6, abs=1e-15)


def test_feedback_is_counted_by_outcome_and_the_gauges_read_the_tally(feedback: Logged,
                                                                      reader: InMemoryMetricReader) -> None:
    assert "smallguard.feedback.accuracy.observed" not in points(reader)  # no series before the first label
    for i in range(40):
        feedback.remember(digit(f"r{i}", "3", 0.99))
        feedback.submit(FeedbackCall(f"r{i}", label="3" if i % 4 else "2"))  # every 4th is wrong
    feedback.submit(FeedbackCall("r1", label="3"))
    for bad in (FeedbackCall("nope", label="3"), FeedbackCall("r1", label="x"), FeedbackCall("r1", label="4")):
        with pytest.raises((RequestNotFoundError, InvalidInputError, FeedbackConflictError)):
            feedback.submit(bad)
    got = points(reader)
    assert by(got["smallguard.feedback.received"], "smallguard.feedback.outcome") == {
        "matched": 40, "duplicate": 1, "unknown_request": 1, "invalid": 1, "conflict": 1}
    summary = feedback.summary("digits")
    assert summary.accuracy.observed == 30 / 40 and summary.accuracy.drifted
    expected = {"observed": 0.75, "estimated": 0.99, "gap": 0.75 - 0.99, "observed.lower": summary.accuracy.low,
                "observed.upper": summary.accuracy.high}
    for name, value in expected.items():
        [point] = got[f"smallguard.feedback.accuracy.{name}"]
        assert dict(point.attributes) == {"smallguard.model.name": "digits", "smallguard.model.version": "1.0.0"}
        assert math.isclose(point.value, value, abs_tol=1e-12), name
    assert [p.value for p in got["smallguard.feedback.labelled"]] == [40]
    assert [p.value for p in got["smallguard.feedback.calibration.drifted"]] == [1.0]


def test_feedback_right_after_its_prediction_writes_this_processs_buffer_first(store_url: str) -> None:
    store = open_store(store_url)
    log = DecisionLog(store, flush_interval_s=60)  # the writer would not write on its own for a minute
    feedback = Feedback({DIGITS_SPEC.name: DIGITS_SPEC}, GuardMetrics(), store, log, wait_s=0.0)
    log.append(None, digit("fresh", "3", 0.9), "none")
    assert feedback.submit(FeedbackCall("fresh", label="3")).correct
    log.close()
    store.close()


def test_ids_nobody_made_cannot_tie_up_the_request_threads(tmp_path: Path) -> None:
    """A feedback that finds nothing may wait for another process's buffer, but only two at once: the third
    answers NOT_FOUND without waiting."""
    store = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    log = DecisionLog(store)
    feedback = Feedback({DIGITS_SPEC.name: DIGITS_SPEC}, GuardMetrics(), store, log, wait_s=5.0)

    def unknown() -> None:
        with pytest.raises(RequestNotFoundError):
            feedback.submit(FeedbackCall(f"nobody-{threading.get_ident()}", label="3"))

    waiting = [threading.Thread(target=unknown) for _ in range(2)]
    for thread in waiting:
        thread.start()
    deadline = time.monotonic() + 10
    while feedback._waiters._value and time.monotonic() < deadline:  # until both hold a waiting place
        time.sleep(0.01)
    unknown()  # the third does not wait its turn
    assert all(thread.is_alive() for thread in waiting)  # the two still wait their 5 s
    for thread in waiting:
        thread.join()
    log.close()
    store.close()
