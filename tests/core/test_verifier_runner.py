"""The verifier runner: inline checks on the request's thread, charged their own CPU time only; other
plugins isolated on a pool and cut off at the budget."""

from __future__ import annotations

import gc
import itertools
import time
from collections.abc import Mapping

import pytest

from smallguard.server.bundle.loader import BoundVerifier
from smallguard.server.core.pauses import GcPauses
from smallguard.server.core.verifier_runner import VerifierRunner
from smallguard.server.domain.bundle_spec import VerifierSpec
from smallguard.server.domain.predictions import Decision
from smallguard.verifiers import CheckResult, ModelKind, Prediction, Status

PREDICTION = Prediction(kind=ModelKind.CLASSIFIER, label="3", probability=0.9)


class Spin:
    """Burns CPU for ``ms`` milliseconds on its own thread."""

    def __init__(self, ms: float) -> None:
        self.ms = ms

    def check(self, prediction: Prediction, context: Mapping[str, str]) -> CheckResult:
        until = time.thread_time() + self.ms / 1000
        while time.thread_time() < until:
            pass
        return CheckResult.passed("done")


class Collect:
    """Triggers a full garbage collection over garbage made before it was called, then passes."""

    def check(self, prediction: Prediction, context: Mapping[str, str]) -> CheckResult:
        gc.collect()
        return CheckResult.passed("collected")


class Sleep:
    """Blocks without using CPU: only a pool thread and a wall-clock cut-off can contain it."""

    def check(self, prediction: Prediction, context: Mapping[str, str]) -> CheckResult:
        time.sleep(2)
        return CheckResult.passed("woke up")


def bound(verifier: object, inline: bool) -> BoundVerifier:
    name = type(verifier).__name__.lower()
    return BoundVerifier(VerifierSpec(name, name, {}, Decision.ESCALATE), verifier, inline)  # type: ignore[arg-type]


@pytest.fixture
def runner() -> VerifierRunner:
    pauses = GcPauses()
    pauses.install()
    runner = VerifierRunner(2, pauses)
    yield runner
    runner.close()


def test_an_inline_check_over_its_budget_is_an_error_after_it_returns(runner: VerifierRunner) -> None:
    (fast,) = runner.run([bound(Spin(1), inline=True)], PREDICTION, {}, budget_ms=50)
    (slow,) = runner.run([bound(Spin(80), inline=True)], PREDICTION, {}, budget_ms=50)
    assert fast.status is Status.PASSED and fast.duration_ms < 50
    assert slow.status is Status.ERROR and slow.message.startswith("ran for ") and "over its time budget of 50 ms" \
        in slow.message


def test_a_garbage_collection_during_an_inline_check_is_not_charged_to_it(runner: VerifierRunner) -> None:
    garbage = [[] for _ in range(300_000)]
    for a, b in itertools.pairwise(garbage):  # cycles only the collector can free
        a.append(b)
        b.append(a)
    del garbage, a, b
    started = time.thread_time()
    (outcome,) = runner.run([bound(Collect(), inline=True)], PREDICTION, {}, budget_ms=5)
    assert time.thread_time() - started > 0.005  # the collection itself took longer than the budget
    assert outcome.status is Status.PASSED and outcome.duration_ms < 5


def test_a_plugin_that_blocks_is_cut_off_at_its_budget_and_the_others_still_run(runner: VerifierRunner) -> None:
    started = time.perf_counter()
    outcomes = runner.run([bound(Sleep(), inline=False), bound(Spin(1), inline=True)], PREDICTION, {}, budget_ms=100)
    assert time.perf_counter() - started < 1.0
    assert [o.status for o in outcomes] == [Status.ERROR, Status.PASSED]
    assert outcomes[0].message == "did not finish within its time budget of 100 ms"
