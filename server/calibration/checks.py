"""The calibration error and the checks every fit applies to its data, shared by the multi-class
methods (``methods``) and the binary-score maps (``binary``)."""

from __future__ import annotations

import numpy as np

from smallguard.server.domain.errors import GuardError


class CalibrationError(GuardError, ValueError):
    """Calibration data or parameters cannot be used; the message says what and, if known, which file."""

    @property
    def path(self) -> str | None:
        return self.where


def check_fit_data(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def check_scores(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if not np.all((s >= 0) & (s <= 1)):  # also refuses NaN
        raise CalibrationError("scores must be numbers in [0, 1]")
    return s


def check_binary_data(scores: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    hit = np.asarray(correct)
    if s.ndim != 1 or s.size == 0 or hit.shape != s.shape:
        raise CalibrationError(f"scores and correct must be non-empty 1-D arrays of one length, "
                               f"got shapes {s.shape} and {hit.shape}")
    check_scores(s)
    if hit.dtype != np.bool_:
        if not np.issubdtype(hit.dtype, np.number) or not np.all((hit == 0) | (hit == 1)):
            raise CalibrationError("correct must be booleans (or 0/1)")
        hit = hit.astype(bool)
    return s, hit
