"""Calibration methods: map a model's scores to probabilities of being right.

Only numpy is needed to *apply* a fitted method (the serving path); scipy is imported inside
``fit`` so a server never pays for it. Every method in ``METHODS`` round-trips through
``to_params`` / ``from_params``, which is what calibration.json stores: temperature scaling here,
and the binary-score maps (Platt, isotonic, histogram binning) from binary.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, Self

import numpy as np

from smallguard.server.domain.errors import GuardError

# Probabilities are clipped to this before taking logs: a float32 model output of exactly 0
# would become -inf, and one such case would dominate a temperature fit. Clipping changes a
# probability vector by at most k * PROBABILITY_FLOOR, far below float32 resolution near 1.
PROBABILITY_FLOOR = 1e-7

# Temperatures outside this range mean the scores carry almost no information (T large) or
# the fit ran off on separable data (T small); either way the bound keeps the result finite.
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0


class CalibrationError(GuardError, ValueError):
    """Calibration data or parameters cannot be used; the message says what and, if known, which file."""

    @property
    def path(self) -> str | None:
        return self.where


class Calibrator(Protocol):
    """What the server needs from a fitted method: probabilities from logits, and its parameters."""

    name: ClassVar[str]

    def probabilities(self, logits: np.ndarray) -> np.ndarray: ...

    def to_params(self) -> dict[str, Any]: ...

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self: ...


def logits_from_probabilities(probabilities: np.ndarray, floor: float = PROBABILITY_FLOOR) -> np.ndarray:
    """Log of clipped probabilities, for models that output probabilities rather than logits.

    softmax(log p) == p, so this leaves the uncalibrated distribution unchanged while giving
    temperature scaling something to scale.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    return np.log(np.clip(p, floor, 1.0))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so large logits cannot overflow."""
    z = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(z - z.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


class TemperatureScaling:
    """softmax(logits / T) with one T fitted by NLL (Guo et al., 2017).

    One parameter cannot overfit a small calibration set, and dividing by T > 0 never changes
    the predicted label, so accuracy is untouched: only confidence moves.
    """

    name: ClassVar[str] = "temperature"

    def __init__(self, temperature: float = 1.0) -> None:
        if isinstance(temperature, bool) or not isinstance(temperature, int | float) \
                or not math.isfinite(temperature) or temperature <= 0:
            raise CalibrationError(f"temperature must be a finite number > 0, got {temperature!r}")
        self.temperature = float(temperature)

    def __repr__(self) -> str:
        return f"TemperatureScaling(temperature={self.temperature!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TemperatureScaling) and other.temperature == self.temperature

    def __hash__(self) -> int:
        return hash((self.name, self.temperature))

    @classmethod
    def fit(cls, logits: np.ndarray, labels: np.ndarray) -> Self:
        """Fit T by minimising the mean NLL over log T in [log 0.05, log 20].

        A coarse grid first, then a bounded Brent refinement around the best grid point: the
        NLL is convex in 1/T, but the grid keeps the fit robust to flat or badly scaled inputs.
        """
        from scipy.optimize import minimize_scalar

        z, y = _check_fit_data(logits, labels)
        true_logit = z[np.arange(len(y)), y]

        def nll(log_t: float) -> float:
            scaled = z / math.exp(log_t)
            top = scaled.max(axis=1)
            log_norm = top + np.log(np.exp(scaled - top[:, None]).sum(axis=1))
            return float(np.mean(log_norm - true_logit / math.exp(log_t)))

        low, high = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)
        grid = np.linspace(low, high, 61)
        values = [nll(g) for g in grid]
        best = int(np.argmin(values))
        lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
        result = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
        log_t = float(result.x) if result.success and result.fun <= values[best] else float(grid[best])
        return cls(math.exp(log_t))

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, one row per example (a single 1-D row is accepted too)."""
        z = np.atleast_2d(np.asarray(logits, dtype=np.float64))
        return softmax(z / self.temperature)

    def to_params(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        if not isinstance(params, Mapping):
            raise CalibrationError(f"params must be an object, got {type(params).__name__}")
        unknown = sorted(set(params) - {"temperature"})
        if unknown:
            raise CalibrationError(f"unknown parameter(s) for method 'temperature': {', '.join(unknown)}")
        if "temperature" not in params:
            raise CalibrationError("method 'temperature' needs params.temperature")
        return cls(params["temperature"])


METHODS: dict[str, type[Calibrator]] = {TemperatureScaling.name: TemperatureScaling}


def load_method(name: str, params: Mapping[str, Any]) -> Calibrator:
    """Rebuild a fitted calibrator from its stored name and parameters."""
    method = METHODS.get(name) if isinstance(name, str) else None
    if method is None:
        known = ", ".join(sorted(METHODS))
        raise CalibrationError(f"unknown calibration method {name!r}; known methods: {known}")
    return method.from_params(params)


def _check_fit_data(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] < 2:
        raise CalibrationError(f"logits must be a non-empty [n, k] array with k >= 2, got shape {z.shape}")
    if not np.all(np.isfinite(z)):
        raise CalibrationError("logits must be finite; for probability outputs use logits_from_probabilities")
    if y.shape != (z.shape[0],):
        raise CalibrationError(f"labels must have shape ({z.shape[0]},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= z.shape[1]:
        raise CalibrationError(f"labels must be class indices in [0, {z.shape[1]})")
    return z, y.astype(np.intp)


# Registered last on purpose: binary.py builds on the helpers above (and imports them at its own
# end), so importing it here, once they exist, works whichever of the two modules is imported first.
from smallguard.server.calibration.binary import (  # noqa: E402
    HistogramBinning,
    IsotonicCalibration,
    PlattScaling,
)

METHODS.update({method.name: method for method in (PlattScaling, IsotonicCalibration, HistogramBinning)})
