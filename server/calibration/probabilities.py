"""Probabilities and logits: the softmax the heads and the fits share, and log-probabilities for models
that output probabilities rather than logits.

These run on every request on a row of a few classes, where numpy's Python-level wrappers
(``np.clip``, ``ndarray.max``, ``sum(keepdims=True)``) cost more than the arithmetic, so they call
the ufuncs directly. The results are the same floats, bit for bit, and the same whether a row is
computed alone or in a batch: a threshold is one of the calibration data's confidences, so a case
at the threshold must get the very same number on every path.
"""

from __future__ import annotations

import numpy as np

# Probabilities are clipped to this before taking logs: a float32 model output of exactly 0
# would become -inf, and one such case would dominate a temperature fit. Clipping changes a
# probability vector by at most k * PROBABILITY_FLOOR, far below float32 resolution near 1.
PROBABILITY_FLOOR = 1e-7


def logits_from_probabilities(probabilities: np.ndarray, floor: float = PROBABILITY_FLOOR) -> np.ndarray:
    """Log of clipped probabilities, for models that output probabilities rather than logits.

    softmax(log p) == p, so this leaves the uncalibrated distribution unchanged while giving
    temperature scaling something to scale.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    return np.log(np.minimum(np.maximum(p, floor), 1.0))  # np.clip's result, without its wrapper


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so large logits cannot overflow."""
    z = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(z - np.maximum.reduce(z, axis=-1, keepdims=True))
    return shifted / np.add.reduce(shifted, axis=-1, keepdims=True)
