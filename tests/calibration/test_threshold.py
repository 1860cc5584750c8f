"""Threshold selection: Learn-then-Test fixed sequence with binomial p-values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta, binom

from smallguard.server.calibration import (
    NoValidThresholdError,
    ThresholdChoice,
    choose_threshold,
    clopper_pearson_upper,
    samples_needed,
)


def test_the_guarantee_holds_on_fresh_data_in_repeated_splits() -> None:
    """Over 200 calibration/fresh splits, the chosen threshold's fresh risk exceeds the target in about delta of them.

    The same splits with the naive rule (lowest threshold whose calibration error rate is at most
    the target) overshoot about half the time, so this test can tell a guarantee from none.
    """
    rng = np.random.default_rng(20240601)
    pool = 200_000
    confidence = 1 - 0.5 * rng.beta(1, 6, size=pool)  # calibrated: P(correct | c) = c, mass near 1
    correct = rng.random(pool) < confidence
    target, delta, splits = 0.05, 0.1, 200
    violations = naive_violations = no_threshold = 0
    coverages = []
    for _ in range(splits):
        order = rng.permutation(pool)
        cal, fresh = order[:1000], order[1000:21000]
        naive = naive_threshold(confidence[cal], correct[cal], target)
        naive_violations += fresh_risk(confidence[fresh], correct[fresh], naive) > target
        try:
            choice = choose_threshold(confidence[cal], correct[cal], target, delta)
        except NoValidThresholdError:
            no_threshold += 1
            continue
        violations += fresh_risk(confidence[fresh], correct[fresh], choice.threshold) > target
        coverages.append(np.mean(confidence[fresh] >= choice.threshold))
    allowed = splits * delta + 2 * np.sqrt(splits * delta * (1 - delta))  # delta plus two standard errors
    assert violations <= allowed
    assert naive_violations > 3 * splits * delta
    assert no_threshold < splits * 0.1
    assert np.mean(coverages) > 0.4  # and it still answers: the guarantee is not bought by refusing everything


def naive_threshold(confidence: np.ndarray, correct: np.ndarray, target: float) -> float:
    order = np.argsort(-confidence)
    running_risk = np.cumsum(~correct[order]) / np.arange(1, len(order) + 1)
    return float(confidence[order][np.flatnonzero(running_risk <= target)[-1]])


def fresh_risk(confidence: np.ndarray, correct: np.ndarray, threshold: float) -> float:
    return float(np.mean(~correct[confidence >= threshold]))


def test_all_correct_answers_everything_with_the_exact_bound() -> None:
    conf = np.linspace(0.5, 0.99, 100)
    choice = choose_threshold(conf, np.ones(100, dtype=bool), target_risk=0.05, delta=0.05)
    assert choice.threshold == pytest.approx(0.5)
    assert (choice.n, choice.answered, choice.expected_coverage, choice.empirical_risk) == (100, 100, 1.0, 0.0)
    assert choice.risk_upper_bound == pytest.approx(1 - 0.05 ** (1 / 100))  # Clopper-Pearson with no errors
    assert choice.p_value == pytest.approx(0.95**100)


def test_the_sequence_stops_at_the_first_threshold_it_cannot_reject() -> None:
    """100 right, then 3 wrong, then 400 right: lower thresholds would pass again, but the test stopped."""
    conf = np.concatenate([np.linspace(0.99, 0.90, 100), [0.85, 0.84, 0.83], np.linspace(0.80, 0.50, 400)])
    correct = np.concatenate([np.ones(100), np.zeros(3), np.ones(400)]).astype(bool)
    assert binom.cdf(3, 503, 0.05) < 0.05  # answering everything would pass on its own...
    choice = choose_threshold(conf, correct, target_risk=0.05, delta=0.05)
    # 101 answered with 1 error still passes; 102 with 2 does not, and the sequence ends there
    assert binom.cdf(1, 101, 0.05) <= 0.05 < binom.cdf(2, 102, 0.05)
    assert choice.threshold == pytest.approx(0.85)
    assert choice.answered == 101 and choice.empirical_risk == pytest.approx(1 / 101)


def test_ties_are_answered_together() -> None:
    conf = np.array([0.9] * 80 + [0.8] * 20 + [0.7] * 50)
    correct = np.array([True] * 80 + [True] * 19 + [False] + [True] * 25 + [False] * 25)
    choice = choose_threshold(conf, correct, target_risk=0.05, delta=0.05)
    assert choice.threshold == 0.8
    assert (choice.answered, choice.empirical_risk) == (100, 0.01)
    assert choice.p_value == pytest.approx(binom.cdf(1, 100, 0.05))
    assert choice.risk_upper_bound == pytest.approx(beta.ppf(0.95, 2, 99))


def test_testing_starts_at_the_first_threshold_that_could_pass() -> None:
    """Thresholds answering fewer than 59 cases cannot certify 5% even with no errors; they are not tested.

    Tested, the first of them (one case answered, p = 0.95) would end the sequence at once.
    """
    assert samples_needed(0.05, 0.05) == 59
    assert binom.cdf(0, 58, 0.05) > 0.05 >= binom.cdf(0, 59, 0.05)
    conf = np.linspace(1.0, 0.0, 201)
    correct = np.ones(201, dtype=bool)
    correct[59] = False  # the 60th most confident case is the first error
    choice = choose_threshold(conf, correct, 0.05, 0.05)
    assert choice.answered == 59 and choice.threshold == conf[58] and choice.empirical_risk == 0.0


def test_custom_candidates_are_used_and_unreachable_ones_skipped() -> None:
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, 2000)
    correct = rng.random(2000) < conf
    grid = np.array([1.5, 0.99, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6])
    choice = choose_threshold(conf, correct, 0.05, 0.05, candidates=grid)
    assert choice.threshold in grid[1:]
    answered = conf >= choice.threshold
    assert choice.answered == answered.sum() and choice.empirical_risk == pytest.approx(np.mean(~correct[answered]))


def test_no_valid_threshold_says_why() -> None:
    with pytest.raises(NoValidThresholdError) as error:
        choose_threshold(np.linspace(0.9, 1.0, 50), np.ones(50, dtype=bool), target_risk=0.02, delta=0.05)
    message = str(error.value)
    assert "at most 2% with confidence 95% from 50 samples" in message
    assert "at least 149 answered cases" in message
    with pytest.raises(NoValidThresholdError, match="the most confident 300 case"):
        choose_threshold(np.full(300, 0.99), np.zeros(300, dtype=bool), 0.05, 0.05)


def test_statement_and_guarantee_section() -> None:
    choice = choose_threshold(np.linspace(0.5, 1, 300), np.ones(300, dtype=bool), target_risk=0.02, delta=0.05)
    assert choice.statement == ("With probability at least 95%, the error rate among answered predictions "
                                "is at most 2%.")
    section = choice.guarantee()
    assert section["procedure"] == "Learn-then-Test fixed sequence, binomial tail p-values"
    assert section["samples"] == 300 and section["answered"] == choice.answered
    assert section["statement"] == choice.statement
    odd = ThresholdChoice(0.9, 0.025, 0.1, 0.5, 0.0, 100, 50, 0.04, 0.01)
    assert odd.statement.endswith("at least 90%, the error rate among answered predictions is at most 2.5%.")


def test_clopper_pearson_upper_bound() -> None:
    assert clopper_pearson_upper(0, 100, 0.05) == pytest.approx(1 - 0.05 ** (1 / 100))
    assert clopper_pearson_upper(5, 5, 0.05) == 1.0
    # the bound is the rate at which seeing k or fewer errors has probability delta
    upper = clopper_pearson_upper(3, 200, 0.05)
    assert binom.cdf(3, 200, upper) == pytest.approx(0.05)


@pytest.mark.parametrize(("conf", "correct", "target", "delta"), [
    (np.array([0.9, 0.8]), np.array([True]), 0.05, 0.05),
    (np.array([]), np.array([]), 0.05, 0.05),
    (np.array([0.9]), np.array([True]), 0.0, 0.05),
    (np.array([0.9]), np.array([True]), 0.05, 1.0),
    (np.array([np.nan]), np.array([True]), 0.05, 0.05),
    (np.array([0.9]), np.array([2]), 0.05, 0.05),
])
def test_bad_input_is_refused(conf: np.ndarray, correct: np.ndarray, target: float, delta: float) -> None:
    with pytest.raises(ValueError):
        choose_threshold(conf, correct, target, delta)


def test_coverage_steps_are_observed_confidences_at_equal_shares_of_the_cases() -> None:
    from smallguard.server.calibration.threshold import coverage_steps

    conf = np.arange(1, 101) / 100.0  # 0.01 .. 1.00
    assert list(coverage_steps(conf, 4)) == [0.76, 0.51, 0.26, 0.01]  # answer 25, 50, 75, 100 cases
    assert list(coverage_steps(conf, 1)) == [0.01]
    assert len(coverage_steps(np.array([0.5, 0.5, 0.9]), 10)) == 3  # never more steps than cases
    with pytest.raises(ValueError):
        coverage_steps(conf, 0)


def test_one_early_confident_error_ends_the_fine_sequence_but_not_a_coarse_one() -> None:
    """3,000 cases, all right but the 218th most confident: tested at every confidence the sequence stops near
    the top; tested at 5% coverage steps its first testable step already absorbs the error."""
    from smallguard.server.calibration.threshold import coverage_steps

    conf = np.linspace(1.0, 0.5, 3000)
    correct = np.ones(3000, dtype=bool)
    correct[217] = False
    fine = choose_threshold(conf, correct, 0.02, 0.025)
    coarse = choose_threshold(conf, correct, 0.02, 0.025, coverage_steps(conf, 20))
    assert fine.answered < 220
    assert coarse.answered == 3000 and coarse.empirical_risk == 1 / 3000
