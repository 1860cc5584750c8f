"""Choose the confidence threshold from a target risk, with a finite-sample guarantee.

Learn-then-Test (Angelopoulos et al., 2021) with a fixed-sequence test: candidate thresholds
are tested from the highest down; at threshold t the null hypothesis is "the error rate among
cases with confidence >= t exceeds the target". With n answered cases and k errors, the exact
binomial p-value is P(Binomial(n, target) <= k). The sequence stops at the first p-value above
delta, and the lowest rejected threshold is chosen. Because each test is only reached if every
earlier one rejected, no multiplicity correction is needed, and with probability at least
1 - delta (over the draw of the calibration data) the chosen threshold's error rate on future
data from the same distribution is at most the target.

The candidates (by default the observed confidences) depend on the data only through the
confidences, not through which cases were right, which is what the binomial p-values condition on.
For the same reason the sequence starts at the highest threshold that answers enough cases to be
rejectable at all (``samples_needed``): above it even zero errors give a p-value above delta, so
testing from the very top would end the sequence at its first step, every time.

The price of fixed-sequence testing over every observed confidence is that one early error can end
the sequence while a lower threshold would have passed; a coarser ``candidates`` grid trades
resolution for fewer such stops. ``coverage_steps`` makes one from the confidences alone: the
thresholds that answer 1/N, 2/N, ... of the cases (the usual grid of Learn-then-Test).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from smallguard.server.calibration.checks import CalibrationError

PROCEDURE = "Learn-then-Test fixed sequence, binomial tail p-values"


class NoValidThresholdError(CalibrationError):
    """No threshold can be certified: the target risk is too low for this much data."""


@dataclass(frozen=True, slots=True)
class ThresholdChoice:
    threshold: float
    target_risk: float
    delta: float
    expected_coverage: float  # share of the given data at or above the threshold
    empirical_risk: float  # error rate among those cases
    n: int  # samples the choice was made on
    answered: int  # of those, cases at or above the threshold
    risk_upper_bound: float  # Clopper-Pearson upper bound on the risk, at level 1 - delta
    p_value: float  # of the chosen threshold's test

    @property
    def statement(self) -> str:
        """The guarantee in words, for people who will not read the procedure."""
        return (f"With probability at least {_percent(1 - self.delta)}, the error rate among answered "
                f"predictions is at most {_percent(self.target_risk)}.")

    def guarantee(self) -> dict[str, Any]:
        """The ``guarantee`` section of calibration.json."""
        return {
            "target_risk": self.target_risk,
            "delta": self.delta,
            "procedure": PROCEDURE,
            "samples": self.n,
            "answered": self.answered,
            "expected_coverage": self.expected_coverage,
            "empirical_risk": self.empirical_risk,
            "risk_upper_bound": self.risk_upper_bound,
            "statement": self.statement,
        }


def coverage_steps(confidences: np.ndarray, steps: int) -> np.ndarray:
    """Candidate thresholds that answer 1/steps, 2/steps, ... of the cases: observed confidences, chosen by
    rank only (never by which cases were right), so the fixed-sequence test stays valid."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    ordered = np.sort(np.asarray(confidences, dtype=np.float64))[::-1]
    ranks = np.unique(np.ceil(np.arange(1, steps + 1) / steps * len(ordered)).astype(int) - 1)
    return ordered[ranks]


def choose_threshold(
    confidences: np.ndarray,
    correct: np.ndarray,
    target_risk: float,
    delta: float,
    candidates: np.ndarray | None = None,
) -> ThresholdChoice:
    """The lowest threshold certified by the fixed-sequence test; raise NoValidThresholdError if none is."""
    from scipy.stats import binom

    conf, hit = _check(confidences, correct, target_risk, delta)
    order = np.argsort(conf, kind="stable")
    sorted_conf = conf[order]
    errors_from = np.concatenate([np.cumsum((~hit[order])[::-1])[::-1], [0]])  # errors at index >= i

    if candidates is None:
        thresholds = np.unique(conf)[::-1]  # ties share one candidate: ">= t" takes all of them
    else:
        thresholds = np.unique(np.asarray(candidates, dtype=np.float64))[::-1]
        if thresholds.size == 0 or not np.all(np.isfinite(thresholds)):
            raise ValueError("candidates must be a non-empty array of finite thresholds")
    first = np.searchsorted(sorted_conf, thresholds, side="left")
    answered = len(conf) - first
    # A threshold answering fewer cases than samples_needed() cannot be rejected even with no
    # errors; left in, it would end the sequence before any testable threshold is reached.
    # Dropping it depends only on how many cases it answers, never on which were right.
    keep = answered >= samples_needed(target_risk, delta)
    thresholds, first, answered = thresholds[keep], first[keep], answered[keep]
    errors = errors_from[first]
    p_values = binom.cdf(errors, answered, target_risk)

    failed = np.flatnonzero(p_values > delta)
    last = (failed[0] if failed.size else len(thresholds)) - 1
    if last < 0:
        raise NoValidThresholdError(_no_threshold_message(len(conf), target_risk, delta, answered, errors))
    n_answered, n_errors = int(answered[last]), int(errors[last])
    return ThresholdChoice(
        threshold=float(thresholds[last]),
        target_risk=float(target_risk),
        delta=float(delta),
        expected_coverage=n_answered / len(conf),
        empirical_risk=n_errors / n_answered,
        n=len(conf),
        answered=n_answered,
        risk_upper_bound=clopper_pearson_upper(n_errors, n_answered, delta),
        p_value=float(p_values[last]),
    )


def clopper_pearson_upper(errors: int, n: int, delta: float) -> float:
    """One-sided exact upper confidence bound on a binomial rate, at level 1 - delta."""
    from scipy.stats import beta

    if errors >= n:
        return 1.0
    return float(beta.ppf(1 - delta, errors + 1, n - errors))


def samples_needed(target_risk: float, delta: float) -> int:
    """Answered cases needed, even with no errors at all, before the target can be certified."""
    return math.ceil(math.log(delta) / math.log1p(-target_risk))


def _no_threshold_message(n: int, target_risk: float, delta: float, answered: np.ndarray, errors: np.ndarray) -> str:
    top = (f"the most confident {int(answered[0])} case(s) already hold {int(errors[0])} error(s)"
           if answered.size else "no candidate threshold answers any case")
    return (f"no threshold guarantees an error rate of at most {_percent(target_risk)} with confidence "
            f"{_percent(1 - delta)} from {n} samples: {top}, and certifying the target needs at least "
            f"{samples_needed(target_risk, delta)} answered cases even with no errors; use more calibration "
            f"data, a higher target_risk or a higher delta")


def _check(confidences: np.ndarray, correct: np.ndarray, target_risk: float, delta: float
           ) -> tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confidences, dtype=np.float64)
    hit = np.asarray(correct)
    if conf.ndim != 1 or conf.size == 0 or hit.shape != conf.shape:
        raise ValueError(f"confidences and correct must be non-empty 1-D arrays of one length, "
                         f"got shapes {conf.shape} and {hit.shape}")
    if not np.all(np.isfinite(conf)):
        raise ValueError("confidences must be finite")
    if hit.dtype != np.bool_:
        if not np.all((hit == 0) | (hit == 1)):
            raise ValueError("correct must be booleans (or 0/1)")
        hit = hit.astype(bool)
    if not 0 < target_risk < 1:
        raise ValueError(f"target_risk must be in (0, 1), got {target_risk}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    return conf, hit


def _percent(value: float) -> str:
    text = f"{value * 100:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"
