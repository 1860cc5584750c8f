"""How well confidence matches correctness, for top-1 predictions.

Bins are right-closed, (lower, upper], with the first bin also holding 0, the convention of
scikit-learn's ``calibration_curve``, so the reliability table here can be checked against it.
Equal-mass bins take their edges from the confidence quantiles (again as scikit-learn does);
they keep every bin populated when confidences pile up near 1, which equal-width bins do not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_BINS = 15

# An exactly-zero probability for the true class would make the NLL infinite; this floor
# (float64 machine epsilon, as scikit-learn's log_loss uses) keeps it finite and comparable.
NLL_FLOOR = float(np.finfo(np.float64).eps)


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    """One bar of a reliability diagram: cases whose confidence falls in (lower, upper]."""

    lower: float
    upper: float
    count: int
    confidence: float  # mean confidence in the bin (NaN when empty)
    accuracy: float  # fraction correct in the bin (NaN when empty)


def top1(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The predicted class and its probability for each row."""
    p = _probabilities(probabilities)
    predicted = p.argmax(axis=1)
    return p[np.arange(len(p)), predicted], predicted


def bin_edges(confidences: np.ndarray, n_bins: int = DEFAULT_BINS, equal_mass: bool = False) -> np.ndarray:
    """n_bins + 1 edges: equal-width on [0, 1], or confidence quantiles (edges may repeat)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if equal_mass:
        return np.percentile(np.asarray(confidences, dtype=np.float64), np.linspace(0, 100, n_bins + 1))
    return np.linspace(0.0, 1.0, n_bins + 1)


def reliability(
    confidences: np.ndarray, correct: np.ndarray, n_bins: int = DEFAULT_BINS, equal_mass: bool = False
) -> list[ReliabilityBin]:
    """Per-bin count, mean confidence and accuracy: the data behind a reliability diagram."""
    conf, hit = _pair(confidences, correct)
    edges = bin_edges(conf, n_bins, equal_mass)
    ids = np.searchsorted(edges[1:-1], conf)
    counts = np.bincount(ids, minlength=n_bins)
    conf_sums = np.bincount(ids, weights=conf, minlength=n_bins)
    hit_sums = np.bincount(ids, weights=hit, minlength=n_bins)
    bins = []
    for i in range(n_bins):
        n = int(counts[i])
        mean_conf = conf_sums[i] / n if n else float("nan")
        mean_hit = hit_sums[i] / n if n else float("nan")
        bins.append(ReliabilityBin(float(edges[i]), float(edges[i + 1]), n, float(mean_conf), float(mean_hit)))
    return bins


def expected_calibration_error(
    confidences: np.ndarray, correct: np.ndarray, n_bins: int = DEFAULT_BINS, equal_mass: bool = False
) -> float:
    """Sum over bins of (bin share of cases) * |accuracy - mean confidence|."""
    bins = reliability(confidences, correct, n_bins, equal_mass)
    total = sum(b.count for b in bins)
    return float(sum(b.count / total * abs(b.accuracy - b.confidence) for b in bins if b.count))


def maximum_calibration_error(confidences: np.ndarray, correct: np.ndarray, n_bins: int = DEFAULT_BINS) -> float:
    """The worst |accuracy - mean confidence| over non-empty equal-width bins."""
    bins = reliability(confidences, correct, n_bins)
    return float(max(abs(b.accuracy - b.confidence) for b in bins if b.count))


def brier_score(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean over cases of the squared distance between the probability vector and the one-hot truth."""
    p = _probabilities(probabilities)
    y = _labels(labels, p)
    one_hot = np.zeros_like(p)
    one_hot[np.arange(len(y)), y] = 1.0
    return float(np.mean(np.sum((p - one_hot) ** 2, axis=1)))


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(true class), with p floored at machine epsilon."""
    p = _probabilities(probabilities)
    y = _labels(labels, p)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], NLL_FLOOR, 1.0))))


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    p = _probabilities(probabilities)
    return float(np.mean(p.argmax(axis=1) == _labels(labels, p)))


def summary(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_BINS) -> dict[str, float]:
    """Every headline metric at once, as plain floats ready for calibration.json."""
    p = _probabilities(probabilities)
    y = _labels(labels, p)
    conf, predicted = top1(p)
    correct = predicted == y
    return {
        "ece": expected_calibration_error(conf, correct, n_bins),
        "ece_equal_mass": expected_calibration_error(conf, correct, n_bins, equal_mass=True),
        "mce": maximum_calibration_error(conf, correct, n_bins),
        "brier": brier_score(p, y),
        "nll": negative_log_likelihood(p, y),
        "accuracy": float(np.mean(correct)),
    }


def binary_nll(confidences: np.ndarray, correct: np.ndarray) -> float:
    """Mean -log P(observed outcome) of a correctness forecast, with P floored at machine epsilon.

    The same floor as ``negative_log_likelihood``: a map that claims certainty and is wrong pays
    about 36 nats for the case, large but finite, so candidates stay comparable.
    """
    c = np.clip(np.asarray(confidences, dtype=np.float64), NLL_FLOOR, 1.0 - NLL_FLOOR)
    hit = np.asarray(correct, dtype=bool)
    return float(-np.mean(np.where(hit, np.log(c), np.log1p(-c))))


def binary_summary(confidences: np.ndarray, correct: np.ndarray, n_bins: int = DEFAULT_BINS) -> dict[str, float]:
    """The same headline metrics for a forecast of one event (an extracted field being exactly right).

    Brier is the binary one, mean (c - y)^2, and NLL is -log of the probability given to what
    happened (c when right, 1 - c when wrong); "accuracy" is how often the event happened.
    """
    conf, hit = _pair(confidences, correct)
    return {
        "ece": expected_calibration_error(conf, hit, n_bins),
        "ece_equal_mass": expected_calibration_error(conf, hit, n_bins, equal_mass=True),
        "mce": maximum_calibration_error(conf, hit, n_bins),
        "brier": float(np.mean((conf - hit) ** 2)),
        "nll": binary_nll(conf, hit == 1.0),
        "accuracy": float(np.mean(hit)),
    }


def _probabilities(probabilities: np.ndarray) -> np.ndarray:
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ValueError(f"probabilities must be a non-empty [n, k] array with k >= 2, got shape {p.shape}")
    return p


def _labels(labels: np.ndarray, p: np.ndarray) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (p.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be {p.shape[0]} class indices, got shape {y.shape} of {y.dtype}")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"labels must be class indices in [0, {p.shape[1]})")
    return y.astype(np.intp)


def _pair(confidences: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confidences, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    if conf.ndim != 1 or conf.shape != hit.shape or conf.size == 0:
        raise ValueError(f"confidences and correct must be non-empty 1-D arrays of one length, "
                         f"got shapes {conf.shape} and {hit.shape}")
    if np.any(conf < 0) or np.any(conf > 1) or not np.all(np.isfinite(conf)):
        raise ValueError("confidences must lie in [0, 1]")
    return conf, hit
