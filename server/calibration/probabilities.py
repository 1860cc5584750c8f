"""Probabilities and logits: the softmax the heads and the fits share, and log-probabilities for models
that output probabilities rather than logits."""

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
    return np.log(np.clip(p, floor, 1.0))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so large logits cannot overflow."""
    z = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(z - z.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
