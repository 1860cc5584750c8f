"""One row calibrated in plain Python gives numpy's floats, bit for bit, or the head keeps numpy.

A threshold is one of the calibrate command's confidences (computed with numpy), so a single
Predict, which takes the plain-Python path, must serve the very same numbers: compared here with
``==`` on floats, never approximately.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from smallguard.server.assembly import build_guard
from smallguard.server.calibration import HistogramBinning, TemperatureScaling, logits_from_probabilities, softmax
from smallguard.server.calibration.rows import matches_numpy, numpy_sum, row_calibration, softmax_row
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


def test_this_machine_gives_numpys_floats_or_the_head_keeps_numpy() -> None:
    temperature = TemperatureScaling(1.7)
    if not matches_numpy():  # numpy's own SIMD exp and log (AVX-512): plain Python would differ in the last bit
        assert row_calibration(True, temperature) is None and row_calibration(False, None) is None
        return
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
        assert [repr(v) for v in softmax_row(row)] == [repr(v) for v in expected], row  # repr: a NaN equals a NaN


def test_the_check_catches_an_exp_one_bit_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """What numpy's own AVX-512 exp would look like: right to within one unit in the last place, not always the
    C library's float. The check then keeps numpy."""
    import smallguard.server.calibration.rows as rows

    exact = math.exp
    monkeypatch.setattr(rows.math, "exp", lambda x: math.nextafter(exact(x), 0.0) if int(x * 1000) % 7 == 0
                        else exact(x))
    matches_numpy.cache_clear()
    try:
        assert not matches_numpy()
        assert row_calibration(True, TemperatureScaling(1.5)) is None
    finally:
        monkeypatch.undo()
        matches_numpy.cache_clear()


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
