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

from smallguard.server.calibration.binary import HistogramBinning, IsotonicCalibration, PlattScaling
from smallguard.server.calibration.checks import CalibrationError, check_fit_data
from smallguard.server.calibration.probabilities import softmax

# Temperatures outside this range mean the scores carry almost no information (T large) or
# the fit ran off on separable data (T small); either way the bound keeps the result finite.
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0


class Calibrator(Protocol):
    """What the server needs from a fitted method: probabilities from logits, and its parameters."""

    name: ClassVar[str]

    def probabilities(self, logits: np.ndarray) -> np.ndarray: ...

    def to_params(self) -> dict[str, Any]: ...

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self: ...


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

        z, y = check_fit_data(logits, labels)
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
        z = np.asarray(logits, dtype=np.float64)
        return softmax((z if z.ndim == 2 else z.reshape(1, -1)) / self.temperature)

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


METHODS.update({method.name: method for method in (PlattScaling, IsotonicCalibration, HistogramBinning)})
