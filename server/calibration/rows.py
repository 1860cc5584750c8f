"""One row of a classifier's scores, calibrated in plain Python: numpy's floats, bit for bit, for less.

A single Predict calibrates one row of a few classes. numpy spends a microsecond or more of
Python-level overhead on each of the ten ufunc calls that takes (and more after an onnxruntime run,
which leaves its caches cold): about 28 us on digits, against 10 us for the same arithmetic on a
list. But a served confidence must be the very number the calibrate command computed with numpy
(a threshold is one of those confidences), so these functions repeat numpy's operations in numpy's
order: IEEE arithmetic on Python floats, exp and log, and a row sum in the order of numpy's pairwise
summation.

exp and log come from ``math`` where numpy calls the C library, as it does for float64 on CPUs
without AVX-512. With AVX-512, numpy has SIMD versions of its own, which differ from the C library's
in the last bit now and then: there the row takes them from numpy, one ufunc call each over the
row, and the rest stays plain Python. ``row_math`` checks on the machine at hand, once, which of the
two gives numpy's floats; where neither does, the head keeps numpy throughout.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from smallguard.server.calibration.methods import Calibrator, TemperatureScaling
from smallguard.server.calibration.probabilities import PROBABILITY_FLOOR, logits_from_probabilities, softmax

# (calibrated, raw) probabilities of one row of the model's output
RowCalibration = Callable[[list[float]], tuple[list[float], list[float]]]
_BLOCK = 128  # numpy's PW_BLOCKSIZE: rows longer than this are summed in halves


def _shifted_exp_each(values: Sequence[float], shift: float) -> list[float]:
    return [math.exp(x - shift) for x in values]


def _scaled_log_each(probabilities: Sequence[float], temperature: float) -> list[float]:
    floor = PROBABILITY_FLOOR
    return [math.log(min(max(p, floor), 1.0)) / temperature for p in probabilities]


def _shifted_exp_numpy(values: Sequence[float], shift: float) -> list[float]:
    return np.exp([x - shift for x in values]).tolist()


def _scaled_log_numpy(probabilities: Sequence[float], temperature: float) -> list[float]:
    floor = PROBABILITY_FLOOR
    return [z / temperature for z in np.log([min(max(p, floor), 1.0) for p in probabilities]).tolist()]


@dataclass(frozen=True, slots=True)
class RowMath:
    """Where a row's exp and log come from. ``shifted_exp(values, shift)``: exp(x - shift) of each value;
    ``scaled_log(probabilities, temperature)``: log(p) of each, p clipped to [PROBABILITY_FLOOR, 1], divided
    by the temperature (as ``logits_from_probabilities`` then a division)."""

    name: str
    shifted_exp: Callable[[Sequence[float], float], list[float]]
    scaled_log: Callable[[Sequence[float], float], list[float]]


C_LIBRARY = RowMath("math", _shifted_exp_each, _scaled_log_each)  # numpy's floats where numpy calls the C library
NUMPY = RowMath("numpy", _shifted_exp_numpy, _scaled_log_numpy)  # numpy's own floats: one ufunc call per row


def numpy_sum(values: Sequence[float]) -> float:
    """The sum of ``values`` as ``np.add.reduce`` computes it over one contiguous row: its identity (0.0)
    plus the pairwise sum (eight running sums, then the rest in order; halves above 128 values)."""
    return 0.0 + _pairwise(values, 0, len(values))


def _pairwise(values: Sequence[float], start: int, n: int) -> float:
    if n < 8:
        total = 0.0
        for i in range(start, start + n):
            total += values[i]
        return total
    if n <= _BLOCK:
        r0, r1, r2, r3, r4, r5, r6, r7 = values[start:start + 8]
        i, end = start + 8, start + n - n % 8
        while i < end:
            r0 += values[i]
            r1 += values[i + 1]
            r2 += values[i + 2]
            r3 += values[i + 3]
            r4 += values[i + 4]
            r5 += values[i + 5]
            r6 += values[i + 6]
            r7 += values[i + 7]
            i += 8
        total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        for j in range(i, start + n):
            total += values[j]
        return total
    half = n // 2
    half -= half % 8
    return _pairwise(values, start, half) + _pairwise(values, start + half, n - half)


def softmax_row(logits: Sequence[float], ops: RowMath = C_LIBRARY) -> list[float]:
    """``softmax`` of one row: shifted by its maximum, exponentiated, divided by the sum."""
    shifted = ops.shifted_exp(logits, max(logits))
    total = numpy_sum(shifted)
    return [e / total for e in shifted]


def logits_row(probabilities: Sequence[float], temperature: float = 1.0, ops: RowMath = C_LIBRARY) -> list[float]:
    """``logits_from_probabilities`` of one row, divided by ``temperature`` (dividing by 1.0 changes no float,
    NaN included)."""
    return ops.scaled_log(probabilities, temperature)


def row_calibration(probabilities: bool, calibrator: Calibrator | None) -> RowCalibration | None:
    """How a head calibrates one row in plain Python: for temperature scaling or no calibration, with the exp
    and log that give numpy's floats on this machine; None where none does (the head uses numpy)."""
    if calibrator is not None and type(calibrator) is not TemperatureScaling:
        return None
    if calibrator is None and probabilities:  # the model's own probabilities: no arithmetic at all
        return lambda row: (row, row)
    ops = row_math()
    if ops is None:
        return None
    if calibrator is None:
        def softmaxed(row: list[float]) -> tuple[list[float], list[float]]:
            raw = softmax_row(row, ops)
            return raw, raw
        return softmaxed
    temperature = calibrator.temperature

    if probabilities:
        return lambda row: (softmax_row(logits_row(row, temperature, ops), ops), row)

    def scaled_logits(row: list[float]) -> tuple[list[float], list[float]]:
        return softmax_row([z / temperature for z in row], ops), softmax_row(row, ops)
    return scaled_logits


def spread(count: int, start: int = 0) -> np.ndarray:
    """``count`` values spread over [0, 1) without a pattern a check could miss (the golden-ratio sequence;
    numpy.random would add 6 MiB to a server that has no other use for it)."""
    return (np.arange(start, start + count) * 0.6180339887498949) % 1.0


@cache
def row_math() -> RowMath | None:
    """The exp and log that give, bit for bit, numpy's floats on this machine: the C library's (``math``,
    the cheaper) or numpy's own over the row; None when neither does (checked once per process)."""
    return next((ops for ops in (C_LIBRARY, NUMPY) if gives_numpys_floats(ops)), None)


def gives_numpys_floats(ops: RowMath) -> bool:
    """Whether these functions, with ``ops``, give numpy's floats: exp and log over their whole range, and
    softmax over rows of 2 to 300 classes (a few milliseconds)."""
    for chunk in range(20):
        values = spread(1000, chunk * 1000)
        exponents = np.concatenate([-745.0 * values[:500], np.log(values[500:] + 1e-300)])
        if not np.array_equal(np.exp(exponents), np.array(ops.shifted_exp(exponents.tolist(), 0.0))):
            return False
        probabilities = np.concatenate([values[:500], 1e-3 * values[500:]])
        if not np.array_equal(logits_from_probabilities(probabilities),
                              np.array(logits_row(probabilities.tolist(), ops=ops))):
            return False
    for classes in (2, 3, 7, 8, 9, 10, 17, 64, 129, 300):
        scale = 1.0 + 9.0 * spread(40, classes)[:, None]  # logits up to +-60
        rows = (12.0 * spread(40 * classes, classes) - 6.0).reshape(40, classes) * scale
        expected = softmax(rows)
        if any(softmax_row(row, ops) != list(want) for row, want in zip(rows.tolist(), expected.tolist(), strict=True)):
            return False
    return True
