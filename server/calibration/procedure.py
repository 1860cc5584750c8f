"""The calibration procedure on scores already computed: split, fit, certify a threshold, measure.

Three disjoint parts of the labelled data, each used for one thing only:
- **fit**: the method's parameters (and, with ``auto``, the cross-validated choice of method);
- **threshold**: the Learn-then-Test threshold, on confidences the fit never saw, so the
  binomial p-values are honest (a calibrator scored on its own fitting data looks better
  than it is, isotonic regression most of all);
- **test**: the metrics before and after, and the coverage and risk the threshold delivers.

Nothing here runs a model or touches a file, so the repeated-split tests can run it thousands
of times.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from smallguard.server.calibration.checks import CalibrationError
from smallguard.server.calibration.measures import DEFAULT_BINS, ReliabilityBin, reliability, summary, top1
from smallguard.server.calibration.methods import METHODS, Calibrator
from smallguard.server.calibration.probabilities import softmax
from smallguard.server.calibration.threshold import ThresholdChoice, choose_threshold, coverage_steps

AUTO = "auto"


@dataclass(frozen=True, slots=True)
class Split:
    fit: np.ndarray
    threshold: np.ndarray
    test: np.ndarray


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Top-1 confidence and correctness on the test part, with the metrics they give."""

    confidences: np.ndarray
    correct: np.ndarray
    metrics: Mapping[str, float]
    bins: Sequence[ReliabilityBin]


@dataclass(frozen=True, slots=True)
class CalibrationRun:
    calibrator: Calibrator
    choice: ThresholdChoice
    fit_samples: int
    before: Evaluation
    after: Evaluation
    method_scores: Mapping[str, float] = field(default_factory=dict)  # cross-validated NLL, with auto

    @property
    def test(self) -> dict[str, float | int]:
        """What the threshold did on the test part: the realised coverage and risk."""
        return coverage_and_risk(self.after.confidences >= self.choice.threshold, self.after.correct)


def coverage_and_risk(answered: np.ndarray, correct: np.ndarray) -> dict[str, float | int]:
    """How much a rule answered, and how often what it answered was wrong."""
    n_answered = int(answered.sum())
    errors = int((~correct[answered]).sum())
    return {
        "samples": len(answered),
        "answered": n_answered,
        "coverage": n_answered / len(answered),
        "risk": errors / n_answered if n_answered else 0.0,
    }


def split_indices(n: int, test_fraction: float, fit_fraction: float, seed: int) -> Split:
    """A seeded random split into fit, threshold and test parts (test may be empty: given separately)."""
    if not 0 <= test_fraction < 1 or not 0 < fit_fraction < 1:
        raise CalibrationError(f"need 0 <= test fraction < 1 and 0 < fit fraction < 1, got {test_fraction}, "
                               f"{fit_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_test = round(n * test_fraction)
    n_fit = round((n - n_test) * fit_fraction)
    return Split(fit=order[n_test:n_test + n_fit], threshold=order[n_test + n_fit:], test=order[:n_test])


def fit_method(method: str, logits: np.ndarray, labels: np.ndarray, seed: int = 0) -> tuple[Calibrator, dict]:
    """Fit the named method, or with ``auto`` the one with the best cross-validated NLL."""
    if method == AUTO:
        from smallguard.server.calibration.selection import select_method

        selection = select_method(logits, labels, seed=seed)
        return selection.calibrator, dict(selection.scores)
    if method not in METHODS:
        raise CalibrationError(f"unknown method {method!r}; expected {AUTO} or one of {', '.join(sorted(METHODS))}")
    return METHODS[method].fit(logits, labels), {}


def evaluate(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_BINS) -> Evaluation:
    confidences, predicted = top1(probabilities)
    correct = predicted == labels
    return Evaluation(confidences, correct, summary(probabilities, labels, n_bins), reliability(
        confidences, correct, n_bins))


def run_calibration(
    logits: np.ndarray,
    labels: np.ndarray,
    split: Split,
    *,
    method: str,
    target_risk: float,
    delta: float,
    test_logits: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    seed: int = 0,
    threshold_steps: int | None = None,
) -> CalibrationRun:
    """Fit on ``split.fit``, choose the threshold on ``split.threshold``, measure on the test part.

    The test part is ``split.test`` or, when given, ``test_logits``/``test_labels`` (a separate file).
    ``threshold_steps``: test the thresholds of that many coverage steps (see ``coverage_steps``) instead of
    every observed confidence.
    """
    z, y = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    if test_logits is None or test_labels is None:
        test_z, test_y = z[split.test], y[split.test]
    else:
        test_z, test_y = np.asarray(test_logits, dtype=np.float64), np.asarray(test_labels)
    if len(test_y) == 0:
        raise CalibrationError("the test part is empty; give --test FILE or a test fraction above 0")
    calibrator, scores = fit_method(method, z[split.fit], y[split.fit], seed)
    held_conf, held_pred = top1(calibrator.probabilities(z[split.threshold]))
    choice = choose_threshold(held_conf, held_pred == y[split.threshold], target_risk, delta,
                              None if threshold_steps is None else coverage_steps(held_conf, threshold_steps))
    return CalibrationRun(
        calibrator=calibrator,
        choice=choice,
        fit_samples=len(split.fit),
        before=evaluate(softmax(test_z), test_y),
        after=evaluate(calibrator.probabilities(test_z), test_y),
        method_scores=scores,
    )
