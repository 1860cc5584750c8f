"""Calibration maps for a binary correctness score: s in [0, 1] -> P(the prediction is right).

The score is a classifier's top-1 probability or an extractor's per-field confidence. Three maps,
from most to least constrained:

- ``PlattScaling``: sigmoid(a * logit(s) + b). Two parameters, so it cannot overfit a small set,
  but it can only bend the score along a sigmoid.
- ``IsotonicCalibration``: the best non-decreasing step map (pool-adjacent-violators). Any
  monotone shape, at the price of more variance; its breakpoints are applied with ``numpy.interp``
  so serving never imports scikit-learn.
- ``HistogramBinning``: equal-mass bins, each mapped to its (smoothed) accuracy. No shape at all
  is assumed, not even monotonicity.

Each also serves a classifier through the ``Calibrator`` contract (``TopLabelCalibrator``): the
top-1 probability is replaced by its calibrated value and the other classes share the rest in
their original proportions. scipy and scikit-learn are imported inside the fits only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, Self

import numpy as np

from smallguard.server.calibration.checks import CalibrationError, check_binary_data, check_fit_data, check_scores
from smallguard.server.calibration.probabilities import PROBABILITY_FLOOR, softmax

# A calibrated top-1 value is never allowed closer than this to the runner-up's (see
# TopLabelCalibrator.probabilities); far above float64 rounding, far below any meaningful confidence.
ARGMAX_MARGIN = 1e-9

# Platt's slope is bounded so that a fit on (nearly) separable data ends at a steep but finite map.
MAX_PLATT_SLOPE = 100.0
MAX_PLATT_INTERCEPT = 1e3

# Histogram binning: at most this many bins, and on average at least MIN_BIN_SIZE cases per bin,
# so a small calibration set gets fewer, better-estimated bins rather than many noisy ones.
HISTOGRAM_BINS = 10
MIN_BIN_SIZE = 20
# Pseudo-cases added to every bin, at the (Laplace-smoothed) overall accuracy: an empty or tiny bin
# then maps to roughly the overall accuracy instead of an unjustified 0 or 1.
PRIOR_STRENGTH = 2.0


class BinaryCalibrator(Protocol):
    """A fitted map from a correctness score in [0, 1] to P(correct)."""

    name: ClassVar[str]

    @classmethod
    def fit_binary(cls, scores: np.ndarray, correct: np.ndarray) -> Self: ...

    def confidence(self, scores: np.ndarray) -> np.ndarray: ...

    def to_params(self) -> dict[str, Any]: ...

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self: ...


class TopLabelCalibrator:
    """The shared part: turn a binary map into a classifier ``Calibrator`` (top-label calibration).

    Subclasses provide ``name``, ``_PARAMS`` (the stored parameter names, which are also their
    constructor's arguments), ``fit_binary``, ``confidence`` and ``to_params``; fitting on logits,
    rewriting probability rows, reading parameters, equality and repr happen here only.
    """

    name: ClassVar[str]
    _PARAMS: ClassVar[tuple[str, ...]]

    @classmethod
    def fit_binary(cls, scores: np.ndarray, correct: np.ndarray) -> Self:
        raise NotImplementedError

    def confidence(self, scores: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def to_params(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def fit(cls, logits: np.ndarray, labels: np.ndarray) -> Self:
        """Fit the binary map on the top-1 softmax probability against whether the top-1 label was right."""
        z, y = check_fit_data(logits, labels)
        p = softmax(z)
        predicted = p.argmax(axis=1)
        return cls.fit_binary(p[np.arange(len(p)), predicted], predicted == y)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Softmax with the top-1 probability p replaced by c = confidence(p), the others scaled by (1-c)/(1-p).

        The other classes keep their relative proportions (they are computed from the logits
        without the top one, so this stays exact even when p rounds to 1). The map was fitted on
        top-1 correctness only: it says how likely the model's label is to be right, nothing about
        which other label would be. So the served label must stay the model's label, and c is
        raised, if needed, just above the runner-up's rescaled probability: with r the runner-up's
        share of the rest, that is c > r / (1 + r), i.e. at most 1/2. Without the clamp a low c
        would silently swap the label for one the calibration was never measured on, and the
        threshold certified on top-1 correctness would no longer describe what is answered.
        """
        z = np.atleast_2d(np.asarray(logits, dtype=np.float64))
        if z.ndim != 2 or z.shape[1] < 2:
            raise CalibrationError(f"logits must be an [n, k] array with k >= 2, got shape {z.shape}")
        if np.any(np.isnan(z) | (z == np.inf)):
            raise CalibrationError("logits must not be NaN or +inf")
        rows = np.arange(len(z))
        p = softmax(z)
        top = p.argmax(axis=1)
        rest_logits = z.copy()
        rest_logits[rows, top] = -np.inf
        dead = np.all(np.isneginf(rest_logits), axis=1)  # every other class at -inf: share the rest evenly
        rest_logits[dead] = 0.0
        rest_logits[dead, top[dead]] = -np.inf
        rest = softmax(rest_logits)  # the other classes' distribution, given the top label is wrong
        runner_up = rest.max(axis=1)
        c = np.maximum(self.confidence(p[rows, top]), runner_up / (1.0 + runner_up) + ARGMAX_MARGIN)
        out = rest * (1.0 - c)[:, None]
        out[rows, top] = c
        return out

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        """Rebuild from stored parameters, refusing missing, unknown or malformed ones by name."""
        if not isinstance(params, Mapping):
            raise CalibrationError(f"params must be an object, got {type(params).__name__}")
        unknown = sorted(set(params) - set(cls._PARAMS))
        if unknown:
            raise CalibrationError(f"unknown parameter(s) for method '{cls.name}': {', '.join(map(str, unknown))}")
        missing = [key for key in cls._PARAMS if key not in params]
        if missing:
            raise CalibrationError(f"method '{cls.name}' needs " + ", ".join(f"params.{key}" for key in missing))
        return cls(**{key: params[key] for key in cls._PARAMS})

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.to_params() == self.to_params()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.name, *(tuple(v) if isinstance(v, list) else v for v in self.to_params().values())))

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.to_params().items())
        return f"{type(self).__name__}({arguments})"


class PlattScaling(TopLabelCalibrator):
    """sigmoid(a * logit(s) + b) (Platt, 1999), fitted by maximum likelihood.

    The fit uses Platt's targets, (N+ + 1) / (N+ + 2) for right and 1 / (N- + 2) for wrong cases,
    instead of 1 and 0: the likelihood then has a finite maximum even on separable data. The slope
    is kept >= 0 so the map is non-decreasing: a score whose rise meant *less* chance of being right
    is a broken score, and a monotone map keeps "calibrated >= t" the same cut as "score >= t'".
    """

    name: ClassVar[str] = "platt"
    _PARAMS: ClassVar[tuple[str, ...]] = ("a", "b")

    def __init__(self, a: float = 1.0, b: float = 0.0) -> None:
        self.a = _number(a, self.name, "a", minimum=0.0)
        self.b = _number(b, self.name, "b")

    @classmethod
    def fit_binary(cls, scores: np.ndarray, correct: np.ndarray) -> Self:
        """Minimise the mean log loss over (a, b) with L-BFGS-B, starting from the identity map."""
        from scipy.optimize import minimize

        s, hit = check_binary_data(scores, correct)
        x = _logit(s)
        positives = float(hit.sum())
        negatives = len(hit) - positives
        target = np.where(hit, (positives + 1) / (positives + 2), 1 / (negatives + 2))

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            z = theta[0] * x + theta[1]
            value = np.mean(np.logaddexp(0.0, z) - target * z)  # log(1 + e^z) - t z: the log loss in z
            residual = _sigmoid(z) - target
            return float(value), np.array([np.mean(residual * x), np.mean(residual)])

        result = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B",
                          bounds=[(0.0, MAX_PLATT_SLOPE), (-MAX_PLATT_INTERCEPT, MAX_PLATT_INTERCEPT)],
                          options={"maxiter": 1000})
        return cls(float(result.x[0]), float(result.x[1]))

    def confidence(self, scores: np.ndarray) -> np.ndarray:
        """P(correct) for each score; non-decreasing in the score."""
        return _sigmoid(self.a * _logit(check_scores(scores)) + self.b)

    def to_params(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b}


class IsotonicCalibration(TopLabelCalibrator):
    """The non-decreasing map that best fits correctness in squared error (isotonic regression).

    Stored as breakpoints ``x`` (strictly increasing scores) and ``y`` (their calibrated values,
    non-decreasing) and applied by linear interpolation between them, constant beyond the ends:
    exactly what scikit-learn's ``IsotonicRegression(out_of_bounds="clip").predict`` computes,
    except that the fitted values are kept within [1/(2n), 1 - 1/(2n)] of the n fitting cases: a
    run of cases all right (or all wrong) is evidence of a high rate, never of certainty.
    """

    name: ClassVar[str] = "isotonic"
    _PARAMS: ClassVar[tuple[str, ...]] = ("x", "y")

    def __init__(self, x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> None:
        xs = _numbers(x, self.name, "x", low=0.0, high=1.0)
        ys = _numbers(y, self.name, "y", low=0.0, high=1.0)
        if xs.size == 0:
            raise CalibrationError(f"{self.name} parameter 'x' must hold at least one breakpoint")
        if ys.size != xs.size:
            raise CalibrationError(f"{self.name} parameter 'y' must have one value per breakpoint in 'x' "
                                   f"({xs.size}), got {ys.size}")
        if np.any(np.diff(xs) <= 0):
            raise CalibrationError(f"{self.name} parameter 'x' must be strictly increasing")
        if np.any(np.diff(ys) < 0):
            raise CalibrationError(f"{self.name} parameter 'y' must be non-decreasing")
        self.x, self.y = xs, ys

    @classmethod
    def fit_binary(cls, scores: np.ndarray, correct: np.ndarray) -> Self:
        from sklearn.isotonic import IsotonicRegression

        s, hit = check_binary_data(scores, correct)
        regression = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0, increasing=True)
        regression.fit(s, hit.astype(np.float64))
        margin = 0.5 / len(s)  # n cases cannot show certainty: a block with no error maps to 1 - 1/(2n), not 1
        return cls(regression.X_thresholds_, np.clip(regression.y_thresholds_, margin, 1.0 - margin))

    def confidence(self, scores: np.ndarray) -> np.ndarray:
        """P(correct) for each score; non-decreasing in the score."""
        return np.interp(check_scores(scores), self.x, self.y)

    def to_params(self) -> dict[str, Any]:
        return {"x": [float(v) for v in self.x], "y": [float(v) for v in self.y]}


class HistogramBinning(TopLabelCalibrator):
    """Equal-mass bins over the scores, each mapped to its accuracy (Zadrozny and Elkan, 2001).

    Bins are right-closed, (edges[i], edges[i+1]], the first also holding 0, as in the metrics; the
    outer edges are 0 and 1 so every score has a bin. Each bin's value is its accuracy under a
    Beta prior of ``PRIOR_STRENGTH`` pseudo-cases at the overall accuracy, so no bin claims 0 or 1
    from a handful of cases. The map is not forced to be monotone.
    """

    name: ClassVar[str] = "histogram"
    _PARAMS: ClassVar[tuple[str, ...]] = ("edges", "values")

    def __init__(self, edges: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray) -> None:
        e = _numbers(edges, self.name, "edges", low=0.0, high=1.0)
        v = _numbers(values, self.name, "values", low=0.0, high=1.0)
        if e.size < 2 or e[0] != 0.0 or e[-1] != 1.0 or np.any(np.diff(e) <= 0):
            raise CalibrationError(f"{self.name} parameter 'edges' must be strictly increasing from 0 to 1")
        if v.size != e.size - 1:
            raise CalibrationError(f"{self.name} parameter 'values' must have one value per bin ({e.size - 1}), "
                                   f"got {v.size}")
        self.edges, self.values = e, v

    @classmethod
    def fit_binary(cls, scores: np.ndarray, correct: np.ndarray, n_bins: int = HISTOGRAM_BINS) -> Self:
        """Up to ``n_bins`` equal-mass bins (fewer for small data, or when tied scores merge edges)."""
        s, hit = check_binary_data(scores, correct)
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
            raise CalibrationError(f"n_bins must be a whole number >= 1, got {n_bins!r}")
        bins = max(1, min(n_bins, len(s) // MIN_BIN_SIZE))
        inner = np.unique(np.percentile(s, np.linspace(0, 100, bins + 1)[1:-1]))
        edges = np.concatenate([[0.0], inner[(inner > 0) & (inner < 1)], [1.0]])
        ids = np.searchsorted(edges[1:-1], s, side="left")
        counts = np.bincount(ids, minlength=len(edges) - 1)
        hits = np.bincount(ids, weights=hit.astype(np.float64), minlength=len(edges) - 1)
        prior = (hit.sum() + 1.0) / (len(hit) + 2.0)
        return cls(edges, (hits + PRIOR_STRENGTH * prior) / (counts + PRIOR_STRENGTH))

    def confidence(self, scores: np.ndarray) -> np.ndarray:
        """P(correct) for each score: the value of the bin it falls in."""
        s = check_scores(scores)
        return self.values[np.searchsorted(self.edges[1:-1], s, side="left")]

    def to_params(self) -> dict[str, Any]:
        return {"edges": [float(v) for v in self.edges], "values": [float(v) for v in self.values]}


BINARY_METHODS: dict[str, type[TopLabelCalibrator]] = {
    method.name: method for method in (PlattScaling, IsotonicCalibration, HistogramBinning)
}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-z) via tanh: no overflow for any finite z, and exactly within [0, 1]."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _logit(s: np.ndarray) -> np.ndarray:
    p = np.clip(s, PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
    return np.log(p) - np.log1p(-p)


def _number(value: Any, method: str, param: str, minimum: float | None = None) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum:g}"
        raise CalibrationError(f"{method} parameter '{param}' must be a finite number{bound}, got {value!r}")
    return float(value)


def _numbers(value: Any, method: str, param: str, low: float, high: float) -> np.ndarray:
    """A list of finite numbers in [low, high] (a float array from a fit, a JSON list from a file)."""
    problem = f"{method} parameter '{param}' must be a list of numbers in [{low:g}, {high:g}]"
    if isinstance(value, np.ndarray):
        if value.ndim != 1 or value.dtype.kind not in "fi":
            raise CalibrationError(f"{problem}, got an array of shape {value.shape} and type {value.dtype}")
        array = value.astype(np.float64)
    elif isinstance(value, list | tuple):
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            raise CalibrationError(f"{problem}, got {_short(value)}")
        array = np.array(value, dtype=np.float64)
    else:
        raise CalibrationError(f"{problem}, got {_short(value)}")
    if not np.all((array >= low) & (array <= high)):  # also refuses NaN and infinities
        raise CalibrationError(f"{problem}, got {_short(value)}")
    return array


def _short(value: Any, limit: int = 80) -> str:
    """repr cut to a readable length: a breakpoint list can hold thousands of numbers."""
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
