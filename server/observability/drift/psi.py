"""The population stability index and the bins it is computed on.

PSI compares two distributions over the same bins: ``sum((live - ref) * ln(live / ref))``.
It is 0 for identical proportions and grows as they part; the usual reading is < 0.1 stable,
0.1-0.2 a moderate shift, > 0.2 a significant one. Empty bins would make it infinite, so
proportions are floored at ``EPSILON`` first (the common convention): an empty reference bin
that fills up scores high, but finitely.

Bins come from the reference data's deciles. A bin holds ``v`` with ``edges[i-1] < v <= edges[i]``
(the first every ``v <= edges[0]``, the last every ``v > edges[-1]``); tied deciles (a pixel that
is almost always 0) collapse into one edge, so a feature has between 2 and 10 bins.
"""

from __future__ import annotations

import numpy as np

EPSILON = 1e-4
QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def quantile_edges(values: np.ndarray) -> np.ndarray:
    """The distinct deciles of ``values`` (one feature): the bin edges a reference profile stores."""
    return np.unique(np.quantile(np.asarray(values, dtype=np.float64), QUANTILES))


def psi(reference: np.ndarray, live: np.ndarray, epsilon: float = EPSILON) -> np.ndarray:
    """PSI of each row: ``reference`` and ``live`` are proportions of shape [..., bins] over the same bins.

    Returns one value per row (a float array of the leading shape). Padding bins that are empty on
    both sides contribute 0.
    """
    ref = np.maximum(np.asarray(reference, dtype=np.float64), epsilon)
    now = np.maximum(np.asarray(live, dtype=np.float64), epsilon)
    return np.sum((now - ref) * np.log(now / ref), axis=-1)


def normalise(counts: np.ndarray) -> np.ndarray:
    """Rows of counts (or weights) to proportions; an all-zero row stays zero."""
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
