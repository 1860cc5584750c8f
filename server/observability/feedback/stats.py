"""Observed against estimated accuracy, and the test that says calibration has drifted.

A calibrated confidence is a promise: of the answered predictions made with confidence c, a
share c is right. So the mean calibrated confidence of a set of answered predictions is an
estimate of their accuracy that needs no labels; ground truth (feedback) gives the observed
accuracy. While the calibration holds the two agree up to sampling noise.

The drift test, at level ``alpha``: with ``n`` labelled answered predictions of which ``k`` were
right, the observed accuracy is k/n and its (1 - alpha) Wilson score interval is computed.
Calibration has drifted when all three hold:

1. ``n >= min_labelled`` (a handful of labels proves nothing);
2. the estimated accuracy lies outside the interval. The Wilson interval is the inversion of
   the binomial score test, so this is exactly "the score test rejects H0: accuracy =
   estimate at level alpha". Under a calibration that holds, the number right is a sum of
   independent Bernoulli(c_i), whose variance is at most that of the binomial with the mean
   confidence, so the test errs on the side of fewer false alarms;
3. ``|gap| > tolerance``, the gap being observed - estimated: with many labels a tiny
   miscalibration is significant but harmless, and the bundle says how much it tolerates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist


@dataclass(frozen=True, slots=True)
class AccuracyCheck:
    """Observed and estimated accuracy of one set of labelled answered predictions."""

    labelled: int
    observed: float  # share right; 0 when nothing is labelled
    estimated: float  # mean calibrated confidence of the same predictions
    low: float  # (1 - alpha) Wilson interval of ``observed``
    high: float
    significant: bool  # the estimate lies outside [low, high]
    drifted: bool  # significant, |gap| > tolerance and labelled >= min_labelled

    @property
    def gap(self) -> float:
        """Observed minus estimated: negative when the confidences promise more than the model delivers."""
        return self.observed - self.estimated

    def explain(self, tolerance: float, alpha: float, min_labelled: int) -> str:
        """The verdict in words, for GetModel."""
        if self.labelled < min_labelled:
            return f"{self.labelled} labelled answered predictions; the drift test needs at least {min_labelled}"
        interval = f"{1 - alpha:.0%} interval [{self.low:.4f}, {self.high:.4f}]"
        where = "outside" if self.significant else "inside"
        verdict = ("calibration has drifted" if self.drifted else
                   "within tolerance" if self.significant else "consistent with the calibration")
        return (f"observed {self.observed:.4f} over {self.labelled}, estimated {self.estimated:.4f} ({where} the "
                f"observed {interval}), gap {self.gap:+.4f} against a tolerance of {tolerance:g}: {verdict}")


def wilson_interval(successes: int, n: int, alpha: float) -> tuple[float, float]:
    """The two-sided (1 - alpha) Wilson score interval for a binomial proportion (n > 0)."""
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes} of {n}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    z = NormalDist().inv_cdf(1 - alpha / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # at k = 0 or k = n one end is exactly 0 or 1; clamp the rounding
    return (0.0 if successes == 0 else max(0.0, centre - half), 1.0 if successes == n else min(1.0, centre + half))


def check_accuracy(correct: Sequence[bool], confidences: Sequence[float], *, tolerance: float, alpha: float,
                   min_labelled: int) -> AccuracyCheck:
    """Compare the share of ``correct`` with the mean of ``confidences`` (the module docstring's test)."""
    if len(correct) != len(confidences):
        raise ValueError(f"{len(correct)} outcomes but {len(confidences)} confidences")
    n = len(correct)
    if n == 0:
        return AccuracyCheck(0, 0.0, 0.0, 0.0, 1.0, significant=False, drifted=False)
    right = sum(1 for c in correct if c)
    observed, estimated = right / n, math.fsum(confidences) / n
    low, high = wilson_interval(right, n, alpha)
    significant = not low <= estimated <= high
    drifted = n >= min_labelled and significant and abs(observed - estimated) > tolerance
    return AccuracyCheck(n, observed, estimated, low, high, significant, drifted)
