"""The Wilson interval and the drift test, against published values and independent calculations."""

from __future__ import annotations

import math
import random

import pytest
from scipy.stats import binomtest, norm

from smallguard.server.observability.feedback.stats import check_accuracy, wilson_interval

# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Statistics in
# Medicine 17:857-872, table I, method 3 (score interval without continuity correction), 95%.
NEWCOMBE = [((81, 263), (0.2553, 0.3662)), ((15, 148), (0.0624, 0.1605)), ((0, 20), (0.0, 0.1611)),
            ((1, 29), (0.0061, 0.1718))]


@pytest.mark.parametrize(("counts", "published"), NEWCOMBE)
def test_wilson_interval_matches_the_published_values(counts: tuple[int, int], published: tuple[float, float]) -> None:
    low, high = wilson_interval(*counts, alpha=0.05)
    assert (round(low, 4), round(high, 4)) == published


def test_wilson_interval_matches_scipy_on_a_grid() -> None:
    for n in (1, 2, 7, 30, 101, 1000):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            for alpha in (0.01, 0.05, 0.2):
                reference = binomtest(k, n).proportion_ci(confidence_level=1 - alpha, method="wilson")
                assert wilson_interval(k, n, alpha) == pytest.approx((reference.low, reference.high), abs=1e-12)


def test_wilson_interval_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError, match="0 <= successes <= n"):
        wilson_interval(5, 4, 0.05)
    with pytest.raises(ValueError, match="n > 0"):
        wilson_interval(0, 0, 0.05)
    with pytest.raises(ValueError, match="alpha"):
        wilson_interval(1, 4, 1.0)


def score_test_rejects(k: int, n: int, p0: float, alpha: float) -> bool:
    """The binomial score test, written out: |k/n - p0| / sqrt(p0 (1 - p0) / n) > z_(1 - alpha/2)."""
    if p0 in (0.0, 1.0):
        return k / n != p0
    return abs(k / n - p0) / math.sqrt(p0 * (1 - p0) / n) > norm.ppf(1 - alpha / 2)


def test_outside_the_interval_is_exactly_the_score_test_rejecting() -> None:
    rng = random.Random(5)
    for _ in range(3000):
        n = rng.randint(1, 400)
        k = rng.randint(0, n)
        p0 = rng.choice([rng.random(), 0.99, 0.999, k / n, 0.5])
        confidences = [p0] * n
        correct = [True] * k + [False] * (n - k)
        check = check_accuracy(correct, confidences, tolerance=0.0001, alpha=0.05, min_labelled=1)
        # stay off the knife edge, where rounding may fall either way
        statistic = abs(k / n - p0) / math.sqrt(p0 * (1 - p0) / n) if 0 < p0 < 1 else math.inf
        if abs(statistic - norm.ppf(0.975)) > 1e-9:
            assert check.significant == score_test_rejects(k, n, p0, 0.05), (k, n, p0)


def test_observed_estimated_and_gap_are_the_plain_share_and_mean() -> None:
    confidences = [0.9, 0.8, 0.95, 0.99, 0.7]
    correct = [True, False, True, True, False]
    check = check_accuracy(correct, confidences, tolerance=0.05, alpha=0.05, min_labelled=1)
    assert check.labelled == 5
    assert check.observed == 3 / 5
    assert check.estimated == pytest.approx(sum(confidences) / 5, abs=1e-15)
    assert check.gap == pytest.approx(0.6 - 0.868, abs=1e-12)
    assert (check.low, check.high) == wilson_interval(3, 5, 0.05)


def test_drifted_needs_significance_a_gap_beyond_tolerance_and_enough_labels() -> None:
    def check(right: int, n: int, confidence: float, tolerance: float = 0.05, min_labelled: int = 30):
        return check_accuracy([True] * right + [False] * (n - right), [confidence] * n,
                              tolerance=tolerance, alpha=0.05, min_labelled=min_labelled)

    # 80% right where 99.9% was promised: far outside the interval and beyond the tolerance
    assert check(80, 100, 0.999).drifted
    # with many labels a 1-point gap is significant, but the bundle tolerates 5 points
    small = check(9900, 10_000, 0.9995)
    assert small.significant and not small.drifted
    # the same gap would count if the bundle tolerated less
    assert check(9900, 10_000, 0.9995, tolerance=0.005).drifted
    # a large gap on a few labels is not significant
    few = check(4, 5, 0.9, min_labelled=1)
    assert few.gap < -0.05 and few.significant is False and few.drifted is False
    # significant and large, but fewer labels than the bundle asks for
    assert check(20, 25, 0.999).significant and not check(20, 25, 0.999).drifted
    # underconfidence drifts too: right far more often than promised
    assert check(98, 100, 0.7).drifted and check(98, 100, 0.7).gap > 0


def test_nothing_labelled_is_no_verdict() -> None:
    empty = check_accuracy([], [], tolerance=0.05, alpha=0.05, min_labelled=1)
    assert (empty.labelled, empty.significant, empty.drifted) == (0, False, False)
    assert "needs at least 1" in empty.explain(0.05, 0.05, 1)
    with pytest.raises(ValueError, match="2 outcomes but 1 confidences"):
        check_accuracy([True, False], [0.5], tolerance=0.05, alpha=0.05, min_labelled=1)


def test_the_explanation_names_the_numbers_and_the_verdict() -> None:
    drifted = check_accuracy([True] * 80 + [False] * 20, [0.999] * 100, tolerance=0.05, alpha=0.05,
                             min_labelled=30)
    text = drifted.explain(0.05, 0.05, 30)
    assert "observed 0.8000 over 100" in text and "estimated 0.9990" in text
    assert "outside the observed 95% interval" in text and "gap -0.1990" in text
    assert text.endswith("calibration has drifted")
