"""The verifier runner: inline checks on the request's thread, charged their own CPU time only; other
plugins isolated on a pool and cut off at the budget."""

from __future__ import annotations

import gc
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping

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


def leave_cyclic_garbage() -> None:
    """Lists in cycles only the collector can free: the next collection takes a while."""
    garbage: list[list[object]] = [[] for _ in range(300_000)]
    for a, b in itertools.pairwise(garbage):
        a.append(b)
        b.append(a)


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
    leave_cyclic_garbage()
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


class SpinOn:
    """Burns ``ms`` of CPU on the predictions whose label is in ``slow``; raises on those in ``broken``."""

    inline = True

    def __init__(self, ms: float, slow: set[str], broken: frozenset[str] = frozenset()) -> None:
        self.spin, self.slow, self.broken = Spin(ms), slow, broken

    def check(self, prediction: Prediction, context: Mapping[str, str]) -> CheckResult:
        if prediction.label in self.broken:
            raise ValueError(f"label {prediction.label}")
        if prediction.label in self.slow:
            return self.spin.check(prediction, context)
        return CheckResult.passed(f"{prediction.label} {context.get('k', '')}")


def labelled(label: str) -> Prediction:
    return Prediction(kind=ModelKind.CLASSIFIER, label=label, probability=0.9)


def test_a_batch_judges_each_item_on_its_own_time_and_answer(runner: VerifierRunner) -> None:
    predictions = [labelled(str(i)) for i in range(6)]
    contexts = [{"k": f"c{i}"} for i in range(6)]
    verifiers = [bound(SpinOn(80, slow={"2"}, broken=frozenset({"4"})), inline=True), bound(Spin(0), inline=True)]
    many = runner.run_many(verifiers, predictions, contexts, budget_ms=50)
    assert len(many) == 6 and all(len(outcomes) == 2 for outcomes in many)
    first = [outcomes[0] for outcomes in many]
    assert [o.status for o in first] == [Status.PASSED, Status.PASSED, Status.ERROR, Status.PASSED, Status.ERROR,
                                         Status.PASSED]
    assert first[1].message == "1 c1"  # each item with its own context
    assert first[2].message.startswith("ran for ") and first[2].duration_ms > 50  # only the slow item overran
    assert first[4].message == "raised ValueError: label 4"
    assert all(o.duration_ms < 50 for i, o in enumerate(first) if i != 2)  # the slow item is not charged to the next
    assert [o.status for _, o in many] == [Status.PASSED] * 6
    alone = [runner.run(verifiers, p, c, budget_ms=50) for p, c in zip(predictions, contexts, strict=True)]
    assert [[(o.name, o.status) for o in outcomes] for outcomes in many] == [[(o.name, o.status) for o in outcomes]
                                                                            for outcomes in alone]
    assert [[o.message for o in outcomes] for i, outcomes in enumerate(many) if i != 2] == [
        [o.message for o in outcomes] for i, outcomes in enumerate(alone) if i != 2]  # 2's names its own time


def test_a_garbage_collection_in_a_batch_is_not_charged_to_the_item_it_stopped(runner: VerifierRunner) -> None:
    leave_cyclic_garbage()
    many = runner.run_many([bound(Collect(), inline=True)], [PREDICTION] * 3, [{}] * 3, budget_ms=5)
    assert [outcomes[0].status for outcomes in many] == [Status.PASSED] * 3


def test_a_batch_with_an_isolated_plugin_still_cuts_it_off(runner: VerifierRunner) -> None:
    started = time.perf_counter()
    many = runner.run_many([bound(Sleep(), inline=False), bound(Spin(1), inline=True)], [PREDICTION] * 2, [{}] * 2,
                           budget_ms=100)
    assert time.perf_counter() - started < 2.0
    assert [[o.status for o in outcomes] for outcomes in many] == [[Status.ERROR, Status.PASSED]] * 2
    assert runner.run_many([], [PREDICTION] * 2, [{}] * 2, budget_ms=100) == [(), ()]


class ReturnsAnError:
    """Returns an exception instead of raising it: an answer that is not a CheckResult."""

    inline = True

    def check(self, prediction: Prediction, context: Mapping[str, str]) -> CheckResult:
        return ValueError("oops")  # type: ignore[return-value]


def test_a_check_that_returns_an_exception_is_reported_as_returned_in_a_batch_as_alone(runner: VerifierRunner) -> None:
    (alone,) = runner.run([bound(ReturnsAnError(), inline=True)], PREDICTION, {}, budget_ms=50)
    ((batch,),) = runner.run_many([bound(ReturnsAnError(), inline=True)], [PREDICTION], [{}], budget_ms=50)
    assert alone.status is batch.status is Status.ERROR
    assert alone.message == batch.message == ("returned ValueError('oops'); expected a CheckResult that passed, "
                                              "failed or skipped")


class Together:
    """An inline verifier with ``check_many``: counts how it was asked; ``spin_ms`` of CPU in each batch call;
    ``answers``: how many answers a batch call gives (None: one per item); ``broken``: every batch call raises."""

    inline = True

    def __init__(self, spin_ms: float = 0.0, answers: int | None = None, broken: bool = False,
                 slow: frozenset[str] = frozenset(), lazily: bool = False, nothing: bool = False,
                 reorders: bool = False, collects: bool = False) -> None:
        self.spin, self.answers, self.broken, self.slow = Spin(spin_ms), answers, broken, slow
        self.lazily, self.nothing, self.reorders, self.collects = lazily, nothing, reorders, collects
        self.batches = self.singles = 0

    def check(self, prediction: Prediction, context: Mapping[str, str]) -> CheckResult:
        self.singles += 1
        if prediction.label in self.slow:
            Spin(80).check(prediction, context)
        return CheckResult.passed(f"{prediction.label} {context.get('k', '')}")

    def check_many(self, predictions: list[Prediction], contexts: list[Mapping[str, str]]
                   ) -> Iterable[CheckResult] | None:
        self.batches += 1
        if self.broken:
            raise RuntimeError("batch broke")
        if self.nothing:
            return None
        if self.reorders:
            predictions.sort(key=lambda p: p.label or "", reverse=True)  # a tuple refuses: nothing moves
        if self.collects:
            Collect().check(predictions[0], contexts[0])
        if self.lazily:
            return self._lazily(predictions, contexts)
        self.spin.check(predictions[0], contexts[0])
        answers = [CheckResult.passed(f"{p.label} {c.get('k', '')}")
                   for p, c in zip(predictions, contexts, strict=True)]
        return answers if self.answers is None else answers[:self.answers]

    def _lazily(self, predictions: list[Prediction], contexts: list[Mapping[str, str]]) -> Iterator[CheckResult]:
        """Works as it yields: each answer's CPU is spent when the runner asks for it."""
        for p, c in zip(predictions, contexts, strict=True):
            self.spin.check(p, c)
            yield CheckResult.passed(f"{p.label} {c.get('k', '')}")


BATCH = [labelled(str(i)) for i in range(5)]
BATCH_CONTEXTS = [{"k": f"c{i}"} for i in range(5)]


@pytest.mark.parametrize("lazily", [False, True], ids=["a list", "a generator that works as it yields"])
def test_a_verifier_with_check_many_is_asked_once_per_batch_and_each_item_gets_an_equal_share(
        runner: VerifierRunner, lazily: bool) -> None:
    verifier = Together(spin_ms=5 if not lazily else 1, lazily=lazily)
    many = runner.run_many([bound(verifier, inline=True)], BATCH, BATCH_CONTEXTS, budget_ms=50)
    assert (verifier.batches, verifier.singles) == (1, 0)
    assert [o.message for (o,) in many] == [f"{i} c{i}" for i in range(5)]
    assert [o.status for (o,) in many] == [Status.PASSED] * 5
    shares = {o.duration_ms for (o,) in many}
    assert len(shares) == 1 and 4 / 5 <= shares.pop() < 50  # 5 ms of CPU or more, split five ways


def test_items_a_batch_call_gives_the_same_answer_share_one_outcome_and_the_others_keep_their_own(
        runner: VerifierRunner) -> None:
    """An answer worked out once for items alike (as label-allowed's) is made an outcome once: equal to what
    each item would get, since an item's share of the time is the same for all."""
    alike, other = CheckResult.passed("alike"), CheckResult.passed("alike")  # equal, but not the same object

    class Shares(Together):
        def check_many(self, predictions: list[Prediction], contexts: list[Mapping[str, str]]) -> list[CheckResult]:
            return [alike, alike, other, alike, CheckResult.failed("no")]

    many = [o for (o,) in runner.run_many([bound(Shares(), inline=True)], BATCH, BATCH_CONTEXTS, budget_ms=50)]
    assert many[0] is many[1] is many[3] and many[2] is not many[0] and many[2] == many[0]
    assert [(o.status, o.message) for o in many] == [(Status.PASSED, "alike")] * 4 + [(Status.FAILED, "no")]
    assert len({o.duration_ms for o in many}) == 1


@pytest.mark.parametrize("make", [lambda: Together(broken=True), lambda: Together(answers=3),
                                  lambda: Together(nothing=True), lambda: Together(reorders=True)],
                         ids=["raises", "answers too few", "answers nothing", "reorders the batch in place"])
def test_a_check_many_that_fails_is_followed_by_each_item_alone(runner: VerifierRunner,
                                                                make: Callable[[], Together]) -> None:
    verifier = make()
    many = runner.run_many([bound(verifier, inline=True)], BATCH, BATCH_CONTEXTS, budget_ms=50)
    assert (verifier.batches, verifier.singles) == (1, 5)
    assert [(o.status, o.message) for (o,) in many] == [(Status.PASSED, f"{i} c{i}") for i in range(5)]


def test_a_batch_over_one_items_budget_is_checked_again_item_by_item_and_only_the_slow_item_fails(
        runner: VerifierRunner) -> None:
    verifier = Together(spin_ms=60, slow=frozenset({"3"}))  # the batch call takes more than one item may
    many = runner.run_many([bound(verifier, inline=True)], BATCH, BATCH_CONTEXTS, budget_ms=50)
    assert (verifier.batches, verifier.singles) == (1, 5)
    assert [o.status for (o,) in many] == [Status.PASSED] * 3 + [Status.ERROR, Status.PASSED]
    assert many[3][0].message.startswith("ran for ") and all(o.duration_ms < 50 for i, (o,) in enumerate(many)
                                                               if i != 3)


def test_a_garbage_collection_in_a_batch_call_is_not_charged_to_it(runner: VerifierRunner) -> None:
    leave_cyclic_garbage()
    verifier = Together(collects=True)
    started = time.thread_time()
    many = runner.run_many([bound(verifier, inline=True)], BATCH, BATCH_CONTEXTS, budget_ms=5)
    assert time.thread_time() - started > 0.005  # the collection itself took longer than the budget
    assert (verifier.batches, verifier.singles) == (1, 0)
    assert [o.status for (o,) in many] == [Status.PASSED] * 5


class Answers:
    """A batch call whose answers are not all CheckResults."""

    inline = True

    def check(self, prediction: Prediction, context: Mapping[str, str]) -> CheckResult:
        raise AssertionError("not asked one by one: the batch call answered every item")

    def check_many(self, predictions: list[Prediction], contexts: list[Mapping[str, str]]) -> list[object]:
        return [CheckResult.passed("fine"), "fine", None]


def test_an_answer_of_a_batch_call_that_is_not_a_check_result_is_an_error_for_that_item_alone(
        runner: VerifierRunner) -> None:
    many = runner.run_many([bound(Answers(), inline=True)], BATCH[:3], BATCH_CONTEXTS[:3], budget_ms=50)
    assert [o.status for (o,) in many] == [Status.PASSED, Status.ERROR, Status.ERROR]
    assert many[1][0].message == "returned 'fine'; expected a CheckResult that passed, failed or skipped"
