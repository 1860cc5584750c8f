"""One row calibrated in plain Python gives numpy's floats, bit for bit, or the head keeps numpy.

A threshold is one of the calibrate command's confidences (computed with numpy), so a single
Predict, which takes the plain-Python path, must serve the very same numbers: compared here with
``==`` on floats, never approximately. numpy's own exp and log over the row give numpy's floats on every
machine and are tested on every machine; the C library's (``math``) give them only where numpy calls it
(no AVX-512), and are tested in full where the machine chose them, on exact values everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from smallguard.server.assembly import build_guard
from smallguard.server.calibration import HistogramBinning, TemperatureScaling, logits_from_probabilities, rows, softmax
from smallguard.server.calibration.rows import (
    C_LIBRARY,
    NUMPY,
    RowMath,
    gives_numpys_floats,
    numpy_sum,
    row_calibration,
    row_math,
    softmax_row,
)
from smallguard.server.core.classifier import ClassifierHead
from smallguard.server.settings import Settings
from tests.conftest import digits_rows

RNG = np.random.default_rng(7)


@pytest.mark.parametrize("length", [1, 2, 3, 7, 8, 9, 10, 15, 16, 17, 31, 127, 128, 129, 200, 257, 1000])
def test_the_row_sum_is_numpys_pairwise_sum(length: int) -> None:
    rows = np.exp(RNG.normal(0.0, 8.0, (200, length)))  # wide magnitudes: the order of additions shows
    expected = np.add.reduce(rows, axis=-1, keepdims=True)[:, 0].tolist()
    assert [numpy_sum(row) for row in rows.tolist()] == expected
    assert sum(numpy_sum(row) != math.fsum(row) for row in rows.tolist()) > 0 or length < 3  # order matters


def test_numpys_own_exp_and_log_over_a_row_give_numpys_floats() -> None:
    """The fallback for machines where numpy has SIMD versions of its own: true on any machine."""
    assert gives_numpys_floats(NUMPY)


@pytest.mark.parametrize("ops", [C_LIBRARY, NUMPY], ids=lambda ops: ops.name)
def test_degenerate_rows_get_numpys_floats_from_either_source(ops: RowMath) -> None:
    """Rows whose exp and log are exact (0, 1, infinities, NaN, underflow to 0): both sources, on every machine."""
    for row in ([0.0, 0.0, 0.0], [1e308, -1e308, 0.0], [-math.inf, 0.0, 1.0], [math.inf, 0.0, 1.0],
                [math.nan, 1.0, 2.0], [1.0, math.nan, 2.0], [-1e4, 0.0, 1e4]):
        with np.errstate(all="ignore"):
            expected = softmax(np.array([row]))[0].tolist()
        assert [repr(v) for v in softmax_row(row, ops)] == [repr(v) for v in expected], row


@pytest.mark.parametrize("chosen", ["this machine's", "numpy's own"])
def test_a_row_gets_numpys_floats(chosen: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every calibration a row can take in plain Python, with the exp and log this machine chose, and with numpy's
    own over the row (what a machine with AVX-512 chooses), against numpy over the whole array."""
    ops = row_math() if chosen == "this machine's" else NUMPY
    assert ops is not None
    monkeypatch.setattr(rows, "row_math", lambda: ops)
    temperature = TemperatureScaling(1.7)
    for probabilities in (True, False):
        for calibrator in (None, temperature):
            calibrate = row_calibration(probabilities, calibrator)
            assert calibrate is not None
            scores = softmax(RNG.normal(0.0, 5.0, (300, 10))) if probabilities else RNG.normal(0.0, 5.0, (300, 10))
            raw = scores if probabilities else softmax(scores)
            logits = logits_from_probabilities(scores) if probabilities else scores
            calibrated = raw if calibrator is None else calibrator.probabilities(logits)
            for row, want_calibrated, want_raw in zip(scores.tolist(), calibrated.tolist(), raw.tolist(), strict=True):
                assert calibrate(row) == (want_calibrated, want_raw)
    for row in ([0.0, 0.0, 0.0], [1e308, -1e308, 0.0], [-math.inf, 0.0, 1.0], [math.inf, 0.0, 1.0],
                [math.nan, 1.0, 2.0], [1.0, math.nan, 2.0], [-745.0, 0.0, 745.0]):  # degenerate logits
        with np.errstate(all="ignore"):
            expected = softmax(np.array([row]))[0].tolist()
        got = softmax_row(row, ops)  # outside: a warning on the served path fails the test (filterwarnings)
        assert [repr(v) for v in got] == [repr(v) for v in expected], row  # repr: a NaN equals a NaN


def test_the_check_catches_an_exp_one_bit_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """What numpy's own AVX-512 exp looks like beside the C library's: right to within one unit in the last
    place, not always the same float. The check then takes numpy's exp over the row; when that is off too, the
    head keeps numpy."""
    def one_bit_off(exp: Callable[[Sequence[float], float], list[float]]) -> Callable[..., list[float]]:
        return lambda values, shift: [math.nextafter(v, 0.0) if int(x * 1000) % 7 == 0 else v
                                      for x, v in zip(values, exp(values, shift), strict=True)]

    monkeypatch.setattr(rows, "C_LIBRARY", RowMath("math", one_bit_off(C_LIBRARY.shifted_exp), C_LIBRARY.scaled_log))
    row_math.cache_clear()
    try:
        assert row_math() is NUMPY
        assert row_calibration(True, TemperatureScaling(1.5)) is not None
        monkeypatch.setattr(rows, "NUMPY", RowMath("numpy", one_bit_off(NUMPY.shifted_exp), NUMPY.scaled_log))
        row_math.cache_clear()
        assert row_math() is None
        assert row_calibration(True, TemperatureScaling(1.5)) is None
        assert row_calibration(False, None) is None
        assert row_calibration(True, None) is not None  # the model's own probabilities: no exp or log to differ
    finally:
        monkeypatch.undo()
        row_math.cache_clear()


def test_other_calibrators_keep_numpy() -> None:
    assert row_calibration(True, HistogramBinning.fit_binary(np.array([0.2, 0.9] * 50),
                                                              np.array([False, True] * 50))) is None


def test_the_digits_head_serves_one_row_as_it_serves_it_in_a_batch() -> None:
    """Every test image, alone (the plain-Python path) and in one batch (numpy): the same floats."""
    guard = build_guard(Settings(), keep_feedback=False)
    try:
        head = guard.report("digits").model.head
        assert isinstance(head, ClassifierHead)
        pixels = np.asarray([row["pixels"] for row in digits_rows()], dtype=np.float32)
        batch = head.predict_batch({"pixels": pixels})
        alone = [head.predict({"pixels": pixels[i:i + 1]}) for i in range(len(pixels))]
        assert alone == batch
        assert len({result.confidence for result in alone}) > 100  # real, varied confidences were compared
    finally:
        guard.close()
