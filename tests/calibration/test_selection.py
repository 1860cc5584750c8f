"""Choosing a calibration method by cross-validated NLL of top-1 correctness."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import log_loss
from sklearn.model_selection import KFold, StratifiedKFold

from smallguard.server.calibration import (
    METHODS,
    CalibrationError,
    IsotonicCalibration,
    MethodSelection,
    PlattScaling,
    binary_nll,
    select_binary_method,
    select_method,
    softmax,
)
from smallguard.server.calibration.procedure import AUTO, fit_method

K = 5


def step_scores(seed: int, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """P(correct) jumps from 0.2 to 0.9 at s = 0.6: monotone, but no sigmoid of logit(s) can follow it."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.0, 1.0, n)
    return scores, rng.random(n) < np.where(scores < 0.6, 0.2, 0.9)


def step_logits(seed: int, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """Classifier outputs whose top-1 probability has the step-shaped correctness above."""
    rng = np.random.default_rng(seed)
    top = rng.uniform(1 / K + 0.01, 0.999, n)
    predicted = rng.integers(0, K, n)
    probabilities = np.tile(((1 - top) / (K - 1))[:, None], (1, K))
    probabilities[np.arange(n), predicted] = top
    right = rng.random(n) < np.where(top < 0.6, 0.2, 0.9)
    wrong_label = (predicted + rng.integers(1, K, n)) % K
    return np.log(probabilities), np.where(right, predicted, wrong_label)


def temperature_logits(seed: int, n: int = 3000, temperature: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(logits / T): exactly what temperature scaling models."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(n, K))
    cumulative = softmax(logits / temperature).cumsum(axis=1)
    return logits, np.minimum((rng.random((n, 1)) > cumulative).sum(axis=1), K - 1)


def test_a_step_shaped_score_gets_isotonic_or_histogram_over_platt() -> None:
    scores, correct = step_scores(1)
    selection = select_binary_method(scores, correct)
    assert selection.chosen in {"isotonic", "histogram"}
    assert selection.scores["platt"] > selection.scores[selection.chosen] + 0.03
    assert set(selection.scores) == {"platt", "isotonic", "histogram"} and selection.folds == 5


def test_a_step_shaped_classifier_gets_isotonic_or_histogram_over_temperature_and_platt() -> None:
    logits, labels = step_logits(2)
    selection = select_method(logits, labels)
    assert selection.chosen in {"isotonic", "histogram"}
    best = selection.scores[selection.chosen]
    assert selection.scores["platt"] > best + 0.03 and selection.scores["temperature"] > best + 0.03


@pytest.mark.parametrize("seed", [3, 4])
def test_temperature_miscalibrated_data_gets_temperature_or_platt(seed: int) -> None:
    logits, labels = temperature_logits(seed)
    selection = select_method(logits, labels)
    assert selection.chosen in {"temperature", "platt"}
    if selection.chosen == "temperature":
        assert selection.calibrator.temperature == pytest.approx(2.0, rel=0.15)


def test_the_winner_is_refitted_on_all_the_data() -> None:
    logits, labels = temperature_logits(5, n=1200)
    selection = select_method(logits, labels, candidates=("platt",))
    assert isinstance(selection, MethodSelection)
    assert selection.chosen == "platt" and selection.calibrator == PlattScaling.fit(logits, labels)
    scores, correct = step_scores(5, n=1200)
    binary = select_binary_method(scores, correct, candidates=("isotonic",))
    assert binary.calibrator == IsotonicCalibration.fit_binary(scores, correct)


def test_selection_is_deterministic_for_a_seed() -> None:
    logits, labels = step_logits(6, n=1500)
    first, again = select_method(logits, labels, seed=7), select_method(logits, labels, seed=7)
    assert first.scores == again.scores and first.chosen == again.chosen and first.calibrator == again.calibrator
    other = select_method(logits, labels, seed=8)
    assert other.scores != first.scores  # the folds do depend on the seed
    scores, correct = step_scores(6, n=1500)
    assert select_binary_method(scores, correct, seed=7) == select_binary_method(scores, correct, seed=7)


def test_scores_are_the_pooled_held_out_nll_of_stratified_folds() -> None:
    """Recompute one candidate's score by hand with scikit-learn's folds and log_loss."""
    logits, labels = temperature_logits(9, n=900)
    selection = select_method(logits, labels, candidates=("temperature", "histogram"), folds=4, seed=3)
    correct = softmax(logits).argmax(axis=1) == labels
    splitter = StratifiedKFold(n_splits=4, shuffle=True, random_state=3)
    for name in ("temperature", "histogram"):
        confidence, hit = np.empty(len(labels)), np.empty(len(labels), dtype=bool)
        for train, test in splitter.split(np.zeros((len(labels), 1)), correct):
            p = METHODS[name].fit(logits[train], labels[train]).probabilities(logits[test])  # type: ignore[attr-defined]
            confidence[test], hit[test] = p.max(axis=1), p.argmax(axis=1) == labels[test]
        assert selection.scores[name] == pytest.approx(log_loss(hit, confidence, labels=[False, True]), rel=1e-9)


def test_rare_errors_fall_back_to_plain_folds_without_warnings() -> None:
    scores = np.linspace(0.5, 1.0, 300)
    correct = np.ones(300, dtype=bool)
    correct[[10, 200]] = False  # two errors, five folds: stratifying is impossible
    selection = select_binary_method(scores, correct, folds=5, seed=1)
    assert all(math.isfinite(v) for v in selection.scores.values())
    expected = [test for _, test in KFold(n_splits=5, shuffle=True, random_state=1).split(scores)]
    assert sum(len(t) for t in expected) == 300  # the folds the fallback uses cover every case once
    assert select_binary_method(scores, np.ones(300, dtype=bool)).chosen in {"platt", "isotonic", "histogram"}


def test_binary_nll_matches_sklearn_log_loss() -> None:
    rng = np.random.default_rng(10)
    confidence = rng.uniform(0.01, 0.99, 1000)
    correct = rng.random(1000) < confidence
    assert binary_nll(confidence, correct) == pytest.approx(log_loss(correct, confidence), rel=1e-12)
    # certainty and wrong: floored at machine epsilon, like the multiclass NLL
    assert binary_nll(np.array([1.0, 0.0]), np.array([False, True])) == pytest.approx(-math.log(2.220446049250313e-16))


@pytest.mark.parametrize(("call", "problem"), [
    (lambda z, y, s, c: select_method(z, y, candidates=("magic",)), "method 'magic' cannot be selected here"),
    (lambda z, y, s, c: select_method(z, y, candidates=()), "at least one method"),
    (lambda z, y, s, c: select_method(z, y, candidates="platt"), "list of method names"),
    (lambda z, y, s, c: select_method(z, y, folds=1), "folds must be a whole number from 2"),
    (lambda z, y, s, c: select_method(z, y, folds=10_000), "folds must be a whole number from 2"),
    (lambda z, y, s, c: select_method(z, y, folds=True), "folds must be a whole number from 2"),
    (lambda z, y, s, c: select_method(z, y[:-1]), "labels must have shape"),
    (lambda z, y, s, c: select_binary_method(s, c, candidates=("temperature",)),
     "method 'temperature' cannot be selected here; candidates are: histogram, isotonic, platt"),
    (lambda z, y, s, c: select_binary_method(s * 2, c), r"\[0, 1\]"),
])
def test_bad_arguments_are_refused(call, problem: str) -> None:  # type: ignore[no-untyped-def]
    logits, labels = temperature_logits(11, n=200)
    scores, correct = step_scores(11, n=200)
    with pytest.raises(CalibrationError, match=problem):
        call(logits, labels, scores, correct)


def test_repeated_candidates_are_scored_once() -> None:
    scores, correct = step_scores(12, n=500)
    selection = select_binary_method(scores, correct, candidates=("histogram", "platt", "histogram"))
    assert list(selection.scores) == ["histogram", "platt"]


def test_the_calibrate_procedure_uses_the_selection_for_auto() -> None:
    logits, labels = step_logits(13, n=1500)
    calibrator, scores = fit_method(AUTO, logits, labels, seed=0)
    selection = select_method(logits, labels, seed=0)
    assert calibrator == selection.calibrator and scores == dict(selection.scores)
