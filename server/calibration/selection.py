"""Choose a calibration method by cross-validation instead of by habit.

Every candidate is scored on the same yardstick: the binary NLL of top-1 correctness on folds
its fit never saw. Binary, because that is what the threshold acts on (is the answered label
right?) and because the binary-score maps say nothing about the non-top classes, so a full
multiclass NLL would compare temperature scaling's whole distribution against the others' guesses
for the rest. Held-out, because a flexible map (isotonic most of all) always wins on its own
fitting data. The winner is then refitted on all the data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from smallguard.server.calibration.binary import BINARY_METHODS
from smallguard.server.calibration.checks import CalibrationError, check_binary_data, check_fit_data
from smallguard.server.calibration.measures import binary_nll
from smallguard.server.calibration.methods import METHODS, Calibrator
from smallguard.server.calibration.probabilities import softmax

DEFAULT_CANDIDATES = ("temperature", "platt", "isotonic", "histogram")
DEFAULT_BINARY_CANDIDATES = ("platt", "isotonic", "histogram")
DEFAULT_FOLDS = 5


@dataclass(frozen=True, slots=True)
class MethodSelection:
    """The chosen method, fitted on all the data, and the evidence for choosing it."""

    chosen: str
    calibrator: Any  # a Calibrator (select_method) or a BinaryCalibrator (select_binary_method)
    scores: Mapping[str, float]  # per candidate: binary NLL of top-1 correctness over the held-out folds
    folds: int


def select_method(
    logits: np.ndarray,
    labels: np.ndarray,
    candidates: Sequence[str] = DEFAULT_CANDIDATES,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
) -> MethodSelection:
    """The classifier calibration method with the lowest cross-validated binary NLL, refitted on all data."""
    z, y = check_fit_data(logits, labels)
    names = _candidates(candidates, METHODS, "fit")
    correct = softmax(z).argmax(axis=1) == y

    def held_out(name: str, train: np.ndarray, test: np.ndarray) -> float:
        probabilities = METHODS[name].fit(z[train], y[train]).probabilities(z[test])  # type: ignore[attr-defined]
        return _total_nll(probabilities.max(axis=1), probabilities.argmax(axis=1) == y[test])

    scores = _cross_validate(names, correct, folds, seed, held_out)
    chosen = min(names, key=lambda name: scores[name])  # ties: the earlier (simpler) candidate
    calibrator: Calibrator = METHODS[chosen].fit(z, y)  # type: ignore[attr-defined]
    return MethodSelection(chosen, calibrator, scores, folds)


def select_binary_method(
    scores: np.ndarray,
    correct: np.ndarray,
    candidates: Sequence[str] = DEFAULT_BINARY_CANDIDATES,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
) -> MethodSelection:
    """The binary map (e.g. for one extractor field) with the lowest cross-validated NLL, refitted on all data."""
    s, hit = check_binary_data(scores, correct)
    names = _candidates(candidates, BINARY_METHODS, "fit_binary")

    def held_out(name: str, train: np.ndarray, test: np.ndarray) -> float:
        return _total_nll(BINARY_METHODS[name].fit_binary(s[train], hit[train]).confidence(s[test]), hit[test])

    nll = _cross_validate(names, hit, folds, seed, held_out)
    chosen = min(names, key=lambda name: nll[name])
    return MethodSelection(chosen, BINARY_METHODS[chosen].fit_binary(s, hit), nll, folds)


def _total_nll(confidences: np.ndarray, correct: np.ndarray) -> float:
    return binary_nll(confidences, correct) * len(correct)


def _cross_validate(
    names: Sequence[str],
    correct: np.ndarray,
    folds: int,
    seed: int,
    held_out: Callable[[str, np.ndarray, np.ndarray], float],
) -> dict[str, float]:
    """Per candidate, the NLL summed over every held-out fold divided by n: each case counts once."""
    splits = _splits(correct, folds, seed)
    return {name: sum(held_out(name, train, test) for train, test in splits) / len(correct) for name in names}


def _splits(correct: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled folds, stratified by correctness when both outcomes have at least one case per fold.

    Stratifying keeps every training fold's error rate close to the whole set's, which matters
    when errors are rare; with fewer errors than folds it is impossible (scikit-learn would warn)
    and plain shuffled folds are used instead. Either way the folds depend only on ``seed``.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(correct)
    if isinstance(folds, bool) or not isinstance(folds, int) or not 2 <= folds <= n:
        raise CalibrationError(f"folds must be a whole number from 2 to the number of samples ({n}), got {folds!r}")
    smallest = min(int(correct.sum()), n - int(correct.sum()))
    splitter = (StratifiedKFold if smallest >= folds else KFold)(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros((n, 1)), correct))


def _candidates(candidates: Iterable[str], table: Mapping[str, Any], fit: str) -> list[str]:
    if isinstance(candidates, str):
        raise CalibrationError(f"candidates must be a list of method names, got the string {candidates!r}")
    names = list(dict.fromkeys(candidates))  # drop repeats, keep order
    if not names:
        raise CalibrationError("candidates must name at least one method")
    for name in names:
        if name not in table or not hasattr(table[name], fit):
            known = ", ".join(sorted(n for n in table if hasattr(table[n], fit)))
            raise CalibrationError(f"method {name!r} cannot be selected here; candidates are: {known}")
    return names
