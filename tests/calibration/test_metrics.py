"""Calibration methods and metrics, checked against scikit-learn on the same data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss

from smallguard.server.calibration import (
    CalibrationError,
    TemperatureScaling,
    brier_score,
    expected_calibration_error,
    load_method,
    logits_from_probabilities,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability,
    softmax,
    summary,
    top1,
)

K = 10


def sample(seed: int, n: int = 3000, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits, and labels drawn from softmax(logits / temperature): calibrated only at that temperature."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(n, K))
    truth = softmax(logits / temperature)
    labels = np.array([rng.choice(K, p=row) for row in truth])
    return logits, labels, softmax(logits)


# --- temperature scaling ---------------------------------------------------------------


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_temperature_fit_recovers_the_temperature_that_generated_the_labels(true_t: float) -> None:
    logits, labels, _ = sample(1, n=4000, temperature=true_t)
    fitted = TemperatureScaling.fit(logits, labels)
    assert fitted.temperature == pytest.approx(true_t, rel=0.1)


def test_temperature_fit_is_the_nll_minimum() -> None:
    logits, labels, _ = sample(2, n=1500, temperature=1.7)
    fitted = TemperatureScaling.fit(logits, labels)

    def nll(t: float) -> float:
        return negative_log_likelihood(TemperatureScaling(t).probabilities(logits), labels)

    best = nll(fitted.temperature)
    for t in np.geomspace(0.05, 20, 400):
        assert best <= nll(float(t)) + 1e-9
    assert best < nll(1.0)


def test_temperature_fit_stays_bounded_on_separable_data() -> None:
    logits = np.eye(4) * 5.0
    fitted = TemperatureScaling.fit(np.tile(logits, (10, 1)), np.tile(np.arange(4), 10))
    # NLL keeps falling as T -> 0 on separable data; the fit ends near the lower bound, not at 0 or NaN
    assert 0.05 <= fitted.temperature < 0.2
    assert np.all(np.isfinite(fitted.probabilities(logits)))


def test_probabilities_are_stable_for_huge_logits_and_keep_the_label() -> None:
    logits = np.array([[1e4, 0.0, -1e4], [-1e300, 0.0, 1e-3], [3.0, 3.0, 3.0]])
    p = TemperatureScaling(0.1).probabilities(logits)
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(axis=1), 1.0)
    assert list(p.argmax(axis=1)) == [0, 2, 0]
    assert p[0, 0] == 1.0 and np.allclose(p[2], 1 / 3)
    assert TemperatureScaling(2.0).probabilities(np.array([2.0, 0.0])).shape == (1, 2)


def test_log_probabilities_are_logits_that_reproduce_the_distribution() -> None:
    p = np.array([[0.7, 0.2, 0.1, 0.0], [1.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    logits = logits_from_probabilities(p)
    assert np.all(np.isfinite(logits))
    assert np.allclose(softmax(logits), p, atol=1e-6)


def test_params_round_trip_through_the_method_table() -> None:
    fitted = TemperatureScaling(1.7)
    rebuilt = load_method("temperature", fitted.to_params())
    assert rebuilt == fitted and fitted.to_params() == {"temperature": 1.7}


@pytest.mark.parametrize(("name", "params", "problem"), [
    ("beta", {"a": 1.0}, "unknown calibration method 'beta'; known methods: histogram, isotonic, platt, temperature"),
    ("temperature", {}, "needs params.temperature"),
    ("temperature", {"temperature": 1.0, "bias": 0.1}, "unknown parameter(s) for method 'temperature': bias"),
    ("temperature", {"temperature": -1.0}, "temperature must be a finite number > 0"),
    ("temperature", {"temperature": "1.0"}, "temperature must be a finite number > 0"),
    ("temperature", {"temperature": True}, "temperature must be a finite number > 0"),
    ("temperature", {"temperature": math.inf}, "temperature must be a finite number > 0"),
    ("temperature", [1.0], "params must be an object"),
])
def test_bad_methods_and_params_are_refused(name: str, params: object, problem: str) -> None:
    with pytest.raises(CalibrationError) as error:
        load_method(name, params)  # type: ignore[arg-type]
    assert problem in str(error.value)


@pytest.mark.parametrize(("logits", "labels"), [
    (np.zeros((3,)), np.zeros(3, dtype=int)),
    (np.zeros((3, 2)), np.zeros(2, dtype=int)),
    (np.zeros((3, 2)), np.array([0, 1, 2])),
    (np.zeros((3, 2)), np.array([0.0, 1.0, 0.0])),
    (np.array([[0.0, -np.inf]] * 3), np.zeros(3, dtype=int)),
])
def test_fit_refuses_malformed_data(logits: np.ndarray, labels: np.ndarray) -> None:
    with pytest.raises(CalibrationError):
        TemperatureScaling.fit(logits, labels)


# --- metrics, cross-checked against scikit-learn -----------------------------------------


def confidences_with_edges(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random top-1 confidences plus values exactly on the 15 bin edges, and correctness drawn from them."""
    rng = np.random.default_rng(seed)
    conf = np.concatenate([rng.uniform(0.1, 1.0, 2000), np.linspace(0, 1, 16)[1:], [1.0, 1.0, 0.4]])
    correct = rng.random(conf.size) < conf**2  # over-confident on purpose
    return conf, correct


@pytest.mark.parametrize("equal_mass", [False, True])
def test_reliability_matches_sklearn_calibration_curve(equal_mass: bool) -> None:
    conf, correct = confidences_with_edges(3)
    strategy = "quantile" if equal_mass else "uniform"
    prob_true, prob_pred = calibration_curve(correct.astype(int), conf, n_bins=15, strategy=strategy)
    bins = [b for b in reliability(conf, correct, 15, equal_mass=equal_mass) if b.count]
    np.testing.assert_allclose([b.accuracy for b in bins], prob_true, rtol=1e-12)
    np.testing.assert_allclose([b.confidence for b in bins], prob_pred, rtol=1e-12)
    assert sum(b.count for b in bins) == conf.size


@pytest.mark.parametrize("equal_mass", [False, True])
def test_ece_is_the_count_weighted_gap_of_sklearn_curve(equal_mass: bool) -> None:
    conf, correct = confidences_with_edges(4)
    strategy = "quantile" if equal_mass else "uniform"
    prob_true, prob_pred = calibration_curve(correct.astype(int), conf, n_bins=15, strategy=strategy)
    edges = np.percentile(conf, np.linspace(0, 100, 16)) if equal_mass else np.linspace(0, 1, 16)
    counts = np.bincount(np.digitize(conf, edges[1:-1], right=True), minlength=15)
    counts = counts[counts > 0]
    expected = float(np.sum(counts / conf.size * np.abs(prob_true - prob_pred)))
    assert expected_calibration_error(conf, correct, 15, equal_mass=equal_mass) == pytest.approx(expected, rel=1e-12)
    if not equal_mass:
        assert maximum_calibration_error(conf, correct, 15) == pytest.approx(np.max(np.abs(prob_true - prob_pred)))


def test_reliability_bins_are_right_closed() -> None:
    bins = reliability(np.array([0.5, 0.5000001, 1.0, 0.0]), np.array([1, 0, 1, 0]), n_bins=2)
    assert [(b.lower, b.upper, b.count) for b in bins] == [(0.0, 0.5, 2), (0.5, 1.0, 2)]
    assert bins[0].confidence == pytest.approx(0.25) and bins[0].accuracy == 0.5
    empty = reliability(np.array([0.9]), np.array([True]), n_bins=4)[0]
    assert empty.count == 0 and math.isnan(empty.confidence)


def test_ece_by_hand() -> None:
    # bins (0.6, 0.8]: conf 0.7, 0.7 -> acc 0.5, gap 0.2; (0.8, 1.0]: conf 0.9, 1.0 -> acc 1.0, gap 0.05
    conf, correct = np.array([0.7, 0.7, 0.9, 1.0]), np.array([1, 0, 1, 1])
    assert expected_calibration_error(conf, correct, n_bins=5) == pytest.approx(0.5 * 0.2 + 0.5 * 0.05)
    assert maximum_calibration_error(conf, correct, n_bins=5) == pytest.approx(0.2)


def test_brier_nll_and_accuracy_match_sklearn() -> None:
    _, labels, probs = sample(5, n=2000, temperature=1.3)
    assert brier_score(probs, labels) == pytest.approx(brier_score_loss(labels, probs, labels=list(range(K))))
    one_hot = np.eye(K)[labels]
    assert brier_score(probs, labels) == pytest.approx(np.mean(np.sum((probs - one_hot) ** 2, axis=1)))
    assert negative_log_likelihood(probs, labels) == pytest.approx(log_loss(labels, probs, labels=list(range(K))))
    conf, predicted = top1(probs)
    assert summary(probs, labels)["accuracy"] == pytest.approx(accuracy_score(labels, predicted))
    assert np.array_equal(conf, probs.max(axis=1))


def test_nll_stays_finite_when_the_true_class_has_probability_zero() -> None:
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert negative_log_likelihood(probs, np.array([1, 1])) == pytest.approx(-math.log(np.finfo(float).eps) / 2)


def test_summary_reports_every_metric_and_tells_calibrated_from_overconfident() -> None:
    logits, labels, _ = sample(6, n=3000, temperature=1.0)
    calibrated = summary(softmax(logits), labels)
    overconfident = summary(softmax(logits * 3.0), labels)
    assert set(calibrated) == {"ece", "ece_equal_mass", "mce", "brier", "nll", "accuracy"}
    assert all(isinstance(v, float) for v in calibrated.values())
    assert calibrated["ece"] < 0.03 < overconfident["ece"]
    assert calibrated["ece_equal_mass"] < overconfident["ece_equal_mass"]
    assert calibrated["nll"] < overconfident["nll"] and calibrated["brier"] < overconfident["brier"]
    assert calibrated["accuracy"] == overconfident["accuracy"]
    refit = TemperatureScaling.fit(logits * 3.0, labels)
    assert summary(refit.probabilities(logits * 3.0), labels)["ece"] < overconfident["ece"] / 3


@pytest.mark.parametrize(("probs", "labels"), [
    (np.array([0.5, 0.5]), np.array([0])),
    (np.array([[0.5, 0.5]]), np.array([2])),
    (np.array([[0.5, 0.5]]), np.array([0, 1])),
    (np.array([[0.5, 0.5]]), np.array(["0"])),
])
def test_metrics_refuse_malformed_input(probs: np.ndarray, labels: np.ndarray) -> None:
    with pytest.raises(ValueError):
        summary(probs, labels)


def test_reliability_refuses_confidences_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reliability(np.array([1.2]), np.array([True]))
