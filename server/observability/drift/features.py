"""What drift is measured on: each input turned into per-bin counts, the same way for the
reference profile (at calibration time) and for live traffic (in the monitor).

One example becomes a matrix of shape [features, bins]:
- a tensor with a fixed shape of at most ``MAX_FEATURES`` elements: one row per element, a one in
  the bin its value falls into (so the window's rows are per-feature histograms);
- a larger or variable-shape tensor: one pooled row, the example's values' histogram divided by
  their number (each example weighs the same, whatever its size);
- a text's length: one row, one-hot like a tensor feature;
- a text's characters: one row of counts per character class (pooled over all characters).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence

import numpy as np

from smallguard.server.domain.bundle_spec import InputSpec

MAX_FEATURES = 256
CHAR_CLASSES = ("letters", "digits", "spaces", "punctuation", "other")


def is_pooled(spec: InputSpec) -> bool:
    """A tensor input summarised as one pooled feature: a variable shape, or too many elements."""
    return any(d == -1 for d in spec.shape) or math.prod(spec.shape) > MAX_FEATURES


def feature_count(spec: InputSpec) -> int:
    """How many per-feature rows a tensor input gets: its element count, or 1 when pooled."""
    return 1 if is_pooled(spec) else math.prod(spec.shape)


class Bins:
    """Per-feature bins (``edges[i-1] < v <= edges[i]``), edges padded with +inf to a common width."""

    def __init__(self, edges: Sequence[Sequence[float]]) -> None:
        width = max((len(e) for e in edges), default=0)
        self.edges = tuple(tuple(float(v) for v in e) for e in edges)
        self._padded = np.full((len(edges), width), np.inf)
        for row, e in enumerate(edges):
            self._padded[row, :len(e)] = e
        self._rows = np.arange(len(edges))
        self._ones = np.ones(width, dtype=np.int8)
        self._edge_columns = list(np.ascontiguousarray(self._padded.T))

    @property
    def shape(self) -> tuple[int, int]:
        """[features, bins]: the shape of one example's counts."""
        return self._padded.shape[0], self._padded.shape[1] + 1

    def index(self, values: np.ndarray) -> np.ndarray:
        """One value per feature -> the bin of each (how many of its feature's edges lie below it)."""
        # a boolean matrix times a vector of ones counts each row's edges below the value (about twice
        # as fast as a sum over the rows, and this runs on every prediction)
        return (values[:, np.newaxis] > self._padded).view(np.int8) @ self._ones

    def indices(self, values: np.ndarray) -> np.ndarray:
        """[examples, features] values -> the bin of each (``index`` for many examples at once). One comparison
        of the whole matrix per edge, added up: three times as fast as the [examples, features, edges] cube and
        its product with ones (int8 products do not use BLAS), for 64 features of 9 edges."""
        counts = np.zeros(values.shape, dtype=np.int8)
        above = np.empty(values.shape, dtype=bool)
        as_int = above.view(np.int8)
        for edge in self._edge_columns:  # each feature's k-th edge
            np.greater(values, edge, out=above)
            counts += as_int
        return counts

    def scalar_indices(self, values: np.ndarray) -> np.ndarray:
        """The bins of many values of a one-feature profile (how many of its edges lie below each)."""
        return np.searchsorted(self._padded[0], values, side="left")

    def one_hot(self, values: np.ndarray) -> np.ndarray:
        """One value per feature -> [features, bins] with a single 1 per row."""
        counts = np.zeros(self.shape, dtype=np.float32)
        counts[self._rows, self.index(values)] = 1.0
        return counts

    def pooled(self, values: np.ndarray) -> np.ndarray:
        """Any number of values of one pooled feature -> [1, bins], their histogram as proportions."""
        index = np.searchsorted(self._padded[0], values, side="left")  # how many edges lie below each value
        counts = np.bincount(index, minlength=self.shape[1]).astype(np.float32)
        return (counts / max(len(values), 1))[np.newaxis, :]


def tensor_counts(bins: Bins, pooled: bool, value: np.ndarray) -> np.ndarray:
    """One example of a tensor input (without the batch dimension)."""
    flat = np.asarray(value, dtype=np.float64).reshape(-1)
    return bins.pooled(flat) if pooled else bins.one_hot(flat)


def _char_class(char: str) -> int:
    category = unicodedata.category(char)
    if category[0] == "L":
        return 0
    if category == "Nd":
        return 1
    if char.isspace():
        return 2
    if category[0] in "PS":  # punctuation and symbols ($, %, +, currency signs)
        return 3
    return 4


_ASCII_CLASS = np.array([_char_class(chr(code)) for code in range(128)], dtype=np.intp)


def char_class_counts(text: str) -> np.ndarray:
    """Characters per class of ``CHAR_CLASSES``, as [1, 5]; ASCII through a table, the rest one by one."""
    codes = np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)
    ascii_ = codes < 128
    counts = np.bincount(_ASCII_CLASS[codes[ascii_]], minlength=len(CHAR_CLASSES)).astype(np.float32)
    for code in codes[~ascii_]:
        counts[_char_class(chr(code))] += 1
    return counts[np.newaxis, :]
