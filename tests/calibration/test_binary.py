"""Binary-score calibration maps (Platt, isotonic, histogram binning), alone and wrapped for a classifier."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from smallguard.server.calibration import (
    BINARY_METHODS,
    METHODS,
    CalibrationError,
    HistogramBinning,
    IsotonicCalibration,
    PlattScaling,
    TopLabelCalibrator,
    choose_threshold,
    expected_calibration_error,
    load_calibration,
    load_method,
    reliability,
    softmax,
    summary,
    write_calibration,
)
from smallguard.server.calibration.binary import ARGMAX_MARGIN, PRIOR_STRENGTH, _logit

NAMES = ("platt", "isotonic", "histogram")
K = 10


def cubed(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores uniform on [0, 1] whose true P(correct) is s**3: badly over-confident, and not a sigmoid."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.0, 1.0, n)
    return scores, rng.random(n) < scores**3


def overconfident_logits(seed: int, n: int, temperature: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose labels are drawn from softmax(logits / temperature): over-confident for T > 1."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(n, K))
    cumulative = softmax(logits / temperature).cumsum(axis=1)
    labels = np.minimum((rng.random((n, 1)) > cumulative).sum(axis=1), K - 1)
    return logits, labels


def fitted(name: str, seed: int = 0) -> TopLabelCalibrator:
    scores, correct = cubed(seed, 2000)
    return BINARY_METHODS[name].fit_binary(scores, correct)


def awkward_logits(seed: int) -> np.ndarray:
    """Random rows plus ties, huge gaps, -inf entries and a row whose softmax rounds to one-hot."""
    rng = np.random.default_rng(seed)
    special = np.array([
        [3.0, 3.0, 3.0, 3.0],
        [0.0, 5.0, 5.0, -1.0],
        [1e4, 0.0, -1e4, 2.0],
        [-1e300, 0.0, 1e-3, 1e-3],
        [0.0, -np.inf, -np.inf, -np.inf],
        [-np.inf, 2.0, -np.inf, 1.0],
        [800.0, 0.0, 0.0, 0.0],
    ])
    return np.vstack([rng.normal(scale=4.0, size=(500, 4)), special])


# --- calibration quality ------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("equal_mass", [False, True])
def test_each_method_removes_a_known_miscalibration_on_held_out_data(name: str, equal_mass: bool) -> None:
    fit_scores, fit_correct = cubed(1, 4000)
    test_scores, test_correct = cubed(2, 4000)
    calibrator = BINARY_METHODS[name].fit_binary(fit_scores, fit_correct)
    before = expected_calibration_error(test_scores, test_correct, equal_mass=equal_mass)
    after = expected_calibration_error(calibrator.confidence(test_scores), test_correct, equal_mass=equal_mass)
    assert before > 0.2  # E[s - s^3] = 1/4
    assert after < 0.04 and after < before / 6


@pytest.mark.parametrize("name", NAMES)
def test_each_method_calibrates_an_overconfident_classifier_without_touching_accuracy(name: str) -> None:
    logits, labels = overconfident_logits(3, 6000)
    fit, test = slice(0, 4000), slice(4000, None)
    calibrator = METHODS[name].fit(logits[fit], labels[fit])  # type: ignore[attr-defined]
    before = summary(softmax(logits[test]), labels[test])
    after = summary(calibrator.probabilities(logits[test]), labels[test])
    assert before["ece"] > 0.25 and after["ece"] < 0.06
    assert after["nll"] < before["nll"] and after["brier"] < before["brier"]
    assert after["accuracy"] == before["accuracy"]


def test_platt_recovers_the_sigmoid_that_generated_the_data() -> None:
    rng = np.random.default_rng(4)
    scores = rng.uniform(0.001, 0.999, 40000)
    correct = rng.random(scores.size) < 1 / (1 + np.exp(-(2.0 * _logit(scores) - 1.0)))
    platt = PlattScaling.fit_binary(scores, correct)
    assert platt.a == pytest.approx(2.0, rel=0.05) and platt.b == pytest.approx(-1.0, abs=0.05)


def test_platt_fit_matches_sklearn_logistic_regression_on_platts_targets() -> None:
    scores, correct = cubed(5, 3000)
    positives, negatives = correct.sum(), (~correct).sum()
    target = np.where(correct, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    x = _logit(scores)[:, None]
    # soft targets as two weighted copies of each case: one labelled right, one wrong
    reference = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10000).fit(
        np.vstack([x, x]), np.r_[np.ones(scores.size), np.zeros(scores.size)], sample_weight=np.r_[target, 1 - target])
    platt = PlattScaling.fit_binary(scores, correct)
    assert platt.a == pytest.approx(reference.coef_[0, 0], rel=1e-4)
    assert platt.b == pytest.approx(reference.intercept_[0], rel=1e-4)


def test_platt_stays_finite_and_monotone_on_separable_and_reversed_data() -> None:
    scores = np.linspace(0.0, 1.0, 200)
    separable = PlattScaling.fit_binary(scores, scores > 0.5)
    assert 0 < separable.a <= 100 and math.isfinite(separable.b)
    reversed_ = PlattScaling.fit_binary(scores, scores < 0.5)  # a score that falls as correctness rises
    assert reversed_.a == 0.0  # the slope is held at 0: a constant map, never a decreasing one
    assert np.ptp(reversed_.confidence(scores)) == 0.0


def test_isotonic_applies_exactly_what_sklearn_predicts_kept_off_certainty() -> None:
    scores, correct = cubed(6, 1500)
    scores = np.round(scores, 2)  # ties, as real confidences have
    reference = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(scores, correct)
    isotonic = IsotonicCalibration.fit_binary(scores, correct)
    grid = np.concatenate([np.linspace(0, 1, 1001), np.random.default_rng(0).random(500)])
    margin = 1 / 3000  # 1 / (2n)
    clipped = np.clip(reference.y_thresholds_, margin, 1 - margin)  # sklearn's breakpoints, kept off 0 and 1
    np.testing.assert_allclose(isotonic.confidence(grid), np.interp(grid, reference.X_thresholds_, clipped),
                               rtol=0, atol=1e-15)
    assert reference.predict(grid).max() == 1.0 and isotonic.confidence(grid).max() == 1 - 1 / 3000


def test_isotonic_never_claims_certainty_from_a_run_without_errors() -> None:
    scores = np.linspace(0.5, 1.0, 400)
    isotonic = IsotonicCalibration.fit_binary(scores, scores > 0.7)  # every case above 0.7 right
    assert isotonic.confidence(np.array([1.0]))[0] == 1 - 1 / 800
    assert isotonic.confidence(np.array([0.5]))[0] == 1 / 800


def test_histogram_values_are_smoothed_bin_accuracies_from_the_equal_mass_reliability_table() -> None:
    scores, correct = cubed(7, 1000)  # 1000 cases: 10 bins of 100
    histogram = HistogramBinning.fit_binary(scores, correct)
    bins = reliability(scores, correct, n_bins=10, equal_mass=True)
    prior = (correct.sum() + 1) / (correct.size + 2)
    expected = [(b.accuracy * b.count + PRIOR_STRENGTH * prior) / (b.count + PRIOR_STRENGTH) for b in bins]
    np.testing.assert_allclose(histogram.values, expected, rtol=1e-12)
    np.testing.assert_allclose(histogram.edges[1:-1], [b.upper for b in bins[:-1]], rtol=1e-12)
    assert histogram.edges[0] == 0.0 and histogram.edges[-1] == 1.0
    # right-closed bins, as in the metrics: a score on an edge belongs to the bin below it
    edge = histogram.edges[3]
    assert histogram.confidence(np.array([edge]))[0] == histogram.values[2]


def test_histogram_never_claims_certainty_and_shrinks_its_bins_for_small_data() -> None:
    all_right = HistogramBinning.fit_binary(np.linspace(0.5, 1.0, 200), np.ones(200, dtype=bool))
    assert np.all(all_right.values < 1.0)
    small = HistogramBinning.fit_binary(np.linspace(0, 1, 50), np.arange(50) % 2 == 0)
    assert len(small.values) == 2  # 50 cases support 2 bins of at least 20, not 10
    tied = HistogramBinning.fit_binary(np.r_[np.full(900, 1.0), np.linspace(0.3, 0.9, 100)], np.ones(1000, bool))
    assert np.all(np.diff(tied.edges) > 0) and tied.edges[-1] == 1.0  # repeated quantiles merge
    with pytest.raises(CalibrationError, match="n_bins"):
        HistogramBinning.fit_binary(np.linspace(0, 1, 50), np.ones(50, bool), n_bins=0)


@pytest.mark.parametrize("name", ["platt", "isotonic"])
def test_platt_and_isotonic_are_monotone(name: str) -> None:
    grid = np.r_[0.0, np.sort(np.random.default_rng(8).random(5000)), 1e-300, 1 - 1e-16, 1.0]
    grid.sort()
    for seed in range(3):
        values = fitted(name, seed).confidence(grid)
        assert np.all(np.diff(values) >= 0)
        assert np.all((values >= 0) & (values <= 1))


@pytest.mark.parametrize("name", NAMES)
def test_confidence_is_vectorised_and_keeps_the_shape(name: str) -> None:
    calibrator = fitted(name)
    grid = np.linspace(0, 1, 12).reshape(3, 4)
    assert calibrator.confidence(grid).shape == (3, 4)
    np.testing.assert_array_equal(calibrator.confidence(grid).ravel(), calibrator.confidence(grid.ravel()))
    assert calibrator.confidence(np.float64(0.5)).shape == ()


# --- the classifier wrapper ------------------------------------------------------------


@pytest.mark.parametrize("calibrator", [
    *(pytest.param(name, id=name) for name in NAMES),
    pytest.param("always-zero", id="always-zero"),
    pytest.param("always-one", id="always-one"),
])
def test_probabilities_are_distributions_that_keep_the_models_label(calibrator: str) -> None:
    method = {"always-zero": IsotonicCalibration([0.0, 1.0], [0.0, 0.0]),
              "always-one": IsotonicCalibration([0.0, 1.0], [1.0, 1.0])}.get(calibrator) or fitted(calibrator)
    for logits in (awkward_logits(9), np.random.default_rng(10).normal(scale=2.0, size=(300, 2))):
        p = method.probabilities(logits)
        assert p.shape == logits.shape and np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
        np.testing.assert_array_equal(p.argmax(axis=1), softmax(logits).argmax(axis=1))
        # ...strictly: the top label never ends up tied with another
        top = np.sort(p, axis=1)
        assert np.all(top[:, -1] > top[:, -2])


def test_probabilities_replace_the_top_and_keep_the_others_proportions() -> None:
    platt = PlattScaling(0.5, -0.2)
    logits = np.random.default_rng(11).normal(scale=2.0, size=(200, 5))
    raw = softmax(logits)
    p = platt.probabilities(logits)
    rows, top = np.arange(len(p)), raw.argmax(axis=1)
    c = platt.confidence(raw[rows, top])
    runner_up = np.sort(raw, axis=1)[:, -2] / (1 - raw[rows, top])
    unclamped = c > runner_up / (1 + runner_up) + ARGMAX_MARGIN
    assert unclamped.sum() > 100
    np.testing.assert_allclose(p[rows, top][unclamped], c[unclamped], rtol=1e-12)
    scale = (1 - c) / (1 - raw[rows, top])  # the other classes, rescaled by (1 - c) / (1 - p)
    others = np.repeat(unclamped[:, None], p.shape[1], axis=1)
    others[rows, top] = False
    np.testing.assert_allclose(p[others], (raw * scale[:, None])[others], rtol=1e-9)


def test_a_low_confidence_is_clamped_just_above_the_runner_up() -> None:
    zero = IsotonicCalibration([0.0, 1.0], [0.0, 0.0])
    p = zero.probabilities(np.array([[2.0, 1.0, 0.0], [5.0, 0.0, 0.0]]))
    # rest = softmax of the other logits; c = r / (1 + r) + margin, and the runner-up gets (1 - c) r
    r = softmax(np.array([1.0, 0.0]))[0]
    assert p[0, 0] == pytest.approx(r / (1 + r) + ARGMAX_MARGIN, abs=1e-15)
    assert p[0, 0] - p[0, 1] == pytest.approx(ARGMAX_MARGIN * (1 + r), rel=1e-4)
    assert p[1, 0] == pytest.approx(1 / 3, abs=1e-8)  # two equal others: all three end (almost) equal
    two_class = zero.probabilities(np.array([0.3, -0.4]))
    assert two_class.shape == (1, 2) and two_class[0, 0] == pytest.approx(0.5 + ARGMAX_MARGIN, abs=1e-15)


def test_probabilities_refuse_nan_and_single_class_logits() -> None:
    platt = PlattScaling()
    with pytest.raises(CalibrationError, match="NaN"):
        platt.probabilities(np.array([[0.0, np.nan]]))
    with pytest.raises(CalibrationError, match="k >= 2"):
        platt.probabilities(np.array([[1.0], [2.0]]))


# --- parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_params_round_trip_through_json_and_the_method_table(name: str) -> None:
    calibrator = fitted(name)
    params = calibrator.to_params()
    stored = json.loads(json.dumps(params, allow_nan=False))
    assert all(isinstance(v, float) or (isinstance(v, list) and all(type(x) is float for x in v))
               for v in params.values())
    rebuilt = load_method(name, stored)
    assert rebuilt == calibrator and hash(rebuilt) == hash(calibrator) and rebuilt.to_params() == params
    assert repr(rebuilt) == repr(calibrator) and repr(calibrator).startswith(type(calibrator).__name__ + "(")
    scores = np.linspace(0, 1, 2001)
    np.testing.assert_array_equal(rebuilt.confidence(scores), calibrator.confidence(scores))  # type: ignore[attr-defined]
    logits = awkward_logits(12)
    np.testing.assert_array_equal(rebuilt.probabilities(logits), calibrator.probabilities(logits))
    assert calibrator != fitted(name, seed=1)
    assert calibrator != METHODS["temperature"](1.0)  # type: ignore[call-arg]


@pytest.mark.parametrize("name", NAMES)
def test_calibration_json_round_trips_every_method(tmp_path: Path, name: str) -> None:
    calibrator = fitted(name)
    scores, correct = cubed(13, 3000)
    choice = choose_threshold(calibrator.confidence(scores), correct, target_risk=0.2, delta=0.1)
    metrics = {"ece": 0.1}
    path = tmp_path / "calibration.json"
    write_calibration(path, calibrator, choice, fit_samples=2000, before=metrics, after=metrics,
                      evaluated_samples=3000, fitted_at=datetime(2025, 1, 1, tzinfo=UTC))
    loaded = load_calibration(path)
    assert loaded.method == name and loaded.calibrator == calibrator
    logits = awkward_logits(14)
    np.testing.assert_array_equal(loaded.calibrator.probabilities(logits), calibrator.probabilities(logits))


@pytest.mark.parametrize(("name", "params", "problem"), [
    ("platt", {"a": 1.0}, "method 'platt' needs params.b"),
    ("platt", {}, "method 'platt' needs params.a, params.b"),
    ("platt", {"a": 1.0, "b": 0.0, "c": 2.0}, "unknown parameter(s) for method 'platt': c"),
    ("platt", {"a": -0.5, "b": 0.0}, "platt parameter 'a' must be a finite number >= 0"),
    ("platt", {"a": 1.0, "b": math.nan}, "platt parameter 'b' must be a finite number"),
    ("platt", {"a": True, "b": 0.0}, "platt parameter 'a'"),
    ("platt", {"a": "1", "b": 0.0}, "platt parameter 'a'"),
    ("platt", [1.0, 0.0], "params must be an object"),
    ("isotonic", {"x": [0.1, 0.5]}, "method 'isotonic' needs params.y"),
    ("isotonic", {"x": [], "y": []}, "isotonic parameter 'x' must hold at least one breakpoint"),
    ("isotonic", {"x": [0.1, 0.5], "y": [0.2]}, "isotonic parameter 'y' must have one value per breakpoint"),
    ("isotonic", {"x": [0.5, 0.1], "y": [0.2, 0.3]}, "isotonic parameter 'x' must be strictly increasing"),
    ("isotonic", {"x": [0.1, 0.1], "y": [0.2, 0.3]}, "isotonic parameter 'x' must be strictly increasing"),
    ("isotonic", {"x": [0.1, 0.5], "y": [0.3, 0.2]}, "isotonic parameter 'y' must be non-decreasing"),
    ("isotonic", {"x": [0.1, 1.5], "y": [0.2, 0.3]}, "isotonic parameter 'x' must be a list of numbers in [0, 1]"),
    ("isotonic", {"x": [0.1, 0.5], "y": [0.2, math.inf]}, "isotonic parameter 'y' must be a list of numbers"),
    ("isotonic", {"x": [0.1, "0.5"], "y": [0.2, 0.3]}, "isotonic parameter 'x' must be a list of numbers"),
    ("isotonic", {"x": 0.5, "y": 0.3}, "isotonic parameter 'x' must be a list of numbers"),
    ("isotonic", {"x": [0.1, False], "y": [0.2, 0.3]}, "isotonic parameter 'x'"),
    ("histogram", {"edges": [0.0, 0.5, 1.0], "values": [0.5]}, "histogram parameter 'values' must have one value"),
    ("histogram", {"edges": [0.1, 0.5, 1.0], "values": [0.5, 0.6]}, "histogram parameter 'edges' must be strictly"),
    ("histogram", {"edges": [0.0, 0.5, 0.9], "values": [0.5, 0.6]}, "histogram parameter 'edges' must be strictly"),
    ("histogram", {"edges": [0.0, 0.5, 0.5, 1.0], "values": [0.5, 0.6, 0.7]}, "parameter 'edges'"),
    ("histogram", {"edges": [0.0], "values": []}, "histogram parameter 'edges'"),
    ("histogram", {"edges": [0.0, 1.0], "values": [-0.1]}, "histogram parameter 'values' must be a list of numbers"),
    ("histogram", {"edges": [0.0, 1.0], "values": [0.5], "prior": 2}, "unknown parameter(s) for method 'histogram'"),
    ("sigmoid", {"a": 1.0, "b": 0.0}, "known methods: histogram, isotonic, platt, temperature"),
])
def test_bad_params_are_refused_naming_the_parameter(name: str, params: object, problem: str) -> None:
    with pytest.raises(CalibrationError) as error:
        load_method(name, params)  # type: ignore[arg-type]
    assert problem in str(error.value)


def test_a_long_bad_list_is_reported_briefly() -> None:
    with pytest.raises(CalibrationError) as error:
        IsotonicCalibration([0.5] * 1000 + [2.0], [0.5] * 1001)
    assert "..." in str(error.value) and len(str(error.value)) < 200


@pytest.mark.parametrize(("scores", "correct", "problem"), [
    (np.array([0.2, 1.5]), np.array([True, False]), r"\[0, 1\]"),
    (np.array([0.2, np.nan]), np.array([True, False]), r"\[0, 1\]"),
    (np.array([0.2, 0.3]), np.array([True]), "one length"),
    (np.array([]), np.array([], dtype=bool), "non-empty"),
    (np.array([[0.2, 0.3]]), np.array([[True, False]]), "1-D"),
    (np.array([0.2, 0.3]), np.array([1, 2]), "booleans"),
    (np.array([0.2, 0.3]), np.array(["yes", "no"]), "booleans"),
])
@pytest.mark.parametrize("name", NAMES)
def test_fit_binary_refuses_malformed_data(name: str, scores: np.ndarray, correct: np.ndarray, problem: str) -> None:
    with pytest.raises(CalibrationError, match=problem):
        BINARY_METHODS[name].fit_binary(scores, correct)


@pytest.mark.parametrize("name", NAMES)
def test_confidence_refuses_scores_outside_the_unit_interval(name: str) -> None:
    with pytest.raises(CalibrationError, match=r"\[0, 1\]"):
        fitted(name).confidence(np.array([0.5, 1.0001]))


@pytest.mark.parametrize("name", NAMES)
def test_fit_on_logits_refuses_malformed_data(name: str) -> None:
    with pytest.raises(CalibrationError, match="labels"):
        METHODS[name].fit(np.zeros((3, 2)), np.array([0, 1, 2]))  # type: ignore[attr-defined]


def test_serving_a_stored_method_imports_neither_scipy_nor_sklearn() -> None:
    params = {name: fitted(name).to_params() for name in NAMES}
    code = (
        "import json, sys\n"
        "import numpy as np\n"
        "from smallguard.server.calibration import load_method\n"
        f"for name, params in json.loads({json.dumps(json.dumps(params))}).items():\n"
        "    method = load_method(name, params)\n"
        "    method.probabilities(np.array([[2.0, 1.0, 0.0]]))\n"
        "    method.confidence(np.array([0.3, 0.9]))\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('scipy', 'sklearn'))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
