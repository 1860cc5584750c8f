"""What the drift modules share: the shipped digits reference, and an independent bin count."""

from __future__ import annotations

import json

import numpy as np

from tests.conftest import DIGITS

SHIPPED = json.loads((DIGITS / "reference.json").read_text())


def digitize(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Proportions per bin, counted by numpy's digitize (edges[i-1] < v <= edges[i]), not by our code."""
    index = np.digitize(values, np.array(edges), right=True)
    return np.bincount(index, minlength=len(edges) + 1) / len(values)
