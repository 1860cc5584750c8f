"""Runs a bundle's verifiers on one prediction, each within the bundle's time budget.

Verifiers are operators' code. One that raises, returns nonsense or overruns its budget counts as
an ERROR (the decision then fails closed) and never takes the request, or the server, down with it.

Two ways to run, chosen per verifier at start-up by its ``inline`` attribute (see the SDK):

- inline (the built-ins, and plugins that declare ``inline = True``: pure, fast, never blocking):
  called on the request's own thread, with no hand-off. The budget is checked against the
  verifier's own CPU time on that thread, less any garbage-collection pause in it, so neither
  another thread holding the interpreter nor a collection is charged to the verifier. An inline
  check cannot be cut short: one that overruns is an ERROR once it returns.
- isolated (every other plugin): submitted to a shared pool, and the request stops waiting when
  the budget is spent, so a plugin stuck in a loop or on I/O costs a pool thread, not the caller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from operator import attrgetter
from types import MappingProxyType

from smallguard.server.bundle.loader import BoundVerifier
from smallguard.server.core.pauses import GcPauses
from smallguard.server.domain.predictions import VerifierOutcome
from smallguard.verifiers import CheckResult, Prediction, Status, Verifier

log = logging.getLogger(__name__)
_INLINE = attrgetter("inline")


class VerifierRunner:
    def __init__(self, threads: int, pauses: GcPauses) -> None:
        self._threads = threads
        self._pauses = pauses
        self._pool: ThreadPoolExecutor | None = None  # made on first use: bundles of built-ins never need it
        self._pool_lock = threading.Lock()
        self._broken_batches: set[str] = set()  # verifiers whose check_many failed once (warned about)

    def run(
        self,
        verifiers: Sequence[BoundVerifier],
        prediction: Prediction,
        context: Mapping[str, str],
        budget_ms: float,
    ) -> tuple[VerifierOutcome, ...]:
        """Run every verifier (always all of them, so catch rates can be measured), in order."""
        if not verifiers:
            return ()
        frozen = MappingProxyType(context)
        if all(map(_INLINE, verifiers)):  # the usual case (built-ins): no pool, no clock but each one's
            return tuple([self._inline(bound, prediction, frozen, budget_ms) for bound in verifiers])
        submitted = time.perf_counter()
        futures = {i: self._isolated().submit(_timed_check, bound.verifier, prediction, frozen)
                   for i, bound in enumerate(verifiers) if not bound.inline}
        outcomes = [self._inline(bound, prediction, frozen, budget_ms) if bound.inline else None
                    for bound in verifiers]
        if futures:
            wait_for(futures.values(), timeout=max(0.0, budget_ms / 1000.0 - (time.perf_counter() - submitted)))
            for i, future in futures.items():
                outcomes[i] = _from_future(verifiers[i], future, budget_ms)
        return tuple(outcomes)  # type: ignore[arg-type]  # every slot is filled above

    def run_many(
        self,
        verifiers: Sequence[BoundVerifier],
        predictions: Sequence[Prediction],
        contexts: Sequence[Mapping[str, str]],
        budget_ms: float,
    ) -> list[tuple[VerifierOutcome, ...]]:
        """``run`` for each of a batch's predictions. When every verifier is inline, they go over the whole batch
        one verifier at a time: in one ``check_many`` call, or item by item with one clock reading between items;
        items answered with the same outcomes then share one tuple of them.
        Otherwise each prediction is run alone. The sequences a verifier gets are tuples: one that reorders them
        in place cannot move answers onto the wrong items."""
        if not verifiers:
            return [()] * len(predictions)
        if not all(map(_INLINE, verifiers)):
            return [self.run(verifiers, prediction, context, budget_ms)
                    for prediction, context in zip(predictions, contexts, strict=True)]
        predictions = tuple(predictions)
        frozen = tuple([MappingProxyType(context) for context in contexts])
        columns = [self._inline_many(bound, predictions, frozen, budget_ms) for bound in verifiers]
        # items whose verifiers answered them with the same outcomes share one tuple: what reads the outcomes
        # (the policy, the metrics, the decision log) works each distinct tuple out once
        if len(columns) == 1:
            alone: dict[int, tuple[VerifierOutcome, ...]] = {}
            return [alone.get(id(outcome)) or alone.setdefault(id(outcome), (outcome,)) for outcome in columns[0]]
        shared: dict[tuple[int, ...], tuple[VerifierOutcome, ...]] = {}
        return [shared.setdefault(tuple(map(id, row)), row) for row in zip(*columns, strict=True)]

    def _inline_many(self, bound: BoundVerifier, predictions: Sequence[Prediction],
                     contexts: Sequence[Mapping[str, str]], budget_ms: float) -> list[VerifierOutcome]:
        """One inline verifier over a batch: by its ``check_many`` when it has one and the batch fits in one
        item's budget, else item by item."""
        many = getattr(bound.verifier, "check_many", None)
        if many is not None:
            together = self._together(bound, many, predictions, contexts, budget_ms)
            if together is not None:
                return together
        return self._each(bound, predictions, contexts, budget_ms)

    def _together(self, bound: BoundVerifier, many: Callable[..., Iterable[object]],
                  predictions: Sequence[Prediction], contexts: Sequence[Mapping[str, str]],
                  budget_ms: float) -> list[VerifierOutcome] | None:
        """The batch in one ``check_many`` call, timed as a whole: each item is charged an equal share. When
        the whole took longer than one item's budget, or the call raised or answered the wrong number of items,
        None: the items are then checked one by one, each timed and judged alone (an inline verifier is pure,
        so asking again is safe), and only an item that overran or raised is an ERROR. That second pass costs
        the batch's time again: a verifier slower than its budget per batch pays twice."""
        clock, paused = time.thread_time_ns, self._pauses.in_this_thread_ns
        started, pauses = clock(), paused()
        try:
            answers = list(many(predictions, contexts))  # any iterable: counted and indexed below
        except Exception as error:
            self._falls_back(bound, f"check_many raised {type(error).__name__}: {error}")
            return None
        spent_ms = max(0.0, (clock() - started - (paused() - pauses)) / 1e6)
        if len(answers) != len(predictions):
            self._falls_back(bound, f"check_many answered {len(answers)} items of {len(predictions)}")
            return None
        if spent_ms > budget_ms:
            log.debug("verifier %s: check_many took %.1f ms for %d items, over one item's budget of %g ms; checking "
                      "them one by one", bound.spec.name, spent_ms, len(predictions), budget_ms)
            return None
        share = spent_ms / max(len(predictions), 1)
        # items given the same answer object (a verifier that works an answer out once for all items alike) share
        # one outcome, made once
        outcomes: dict[int, VerifierOutcome] = {}
        return [outcomes.get(id(answer)) or outcomes.setdefault(id(answer), _checked(bound, answer, share))
                for answer in answers]

    def _falls_back(self, bound: BoundVerifier, why: str) -> None:
        """Say once per verifier that its batch call failed (then at debug level: it may fail on every batch)."""
        name = bound.spec.name
        first = name not in self._broken_batches
        self._broken_batches.add(name)
        log.log(logging.WARNING if first else logging.DEBUG, "verifier %s: %s; checking the items one by one%s",
                name, why, " (said once: later batches at debug level)" if first else "")

    def _each(self, bound: BoundVerifier, predictions: Sequence[Prediction],
              contexts: Sequence[Mapping[str, str]], budget_ms: float) -> list[VerifierOutcome]:
        """One inline verifier over a batch, item by item. An item's CPU time is the time from the clock reading
        after the item before it to the one after it (its check and a loop step), less the collections in it."""
        check, clock, paused = bound.verifier.check, time.thread_time_ns, self._pauses.in_this_thread_ns
        answers: list[object] = []
        spent_ns: list[int] = []
        raised: dict[int, Exception] = {}  # by item: what a check raised (as against returned)
        started, pauses = clock(), paused()
        for prediction, context in zip(predictions, contexts, strict=True):
            try:
                answer = check(prediction, context)
            except Exception as error:
                answer = raised[len(answers)] = error
            now, pauses_now = clock(), paused()
            answers.append(answer)
            spent_ns.append(now - started - (pauses_now - pauses))
            started, pauses = now, pauses_now
        return [_raised(bound, raised[i]) if i in raised else _judged(bound, answer, max(0.0, spent / 1e6), budget_ms)
                for i, (answer, spent) in enumerate(zip(answers, spent_ns, strict=True))]

    def close(self) -> None:
        self._pauses.uninstall()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _isolated(self) -> ThreadPoolExecutor:
        if self._pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(max_workers=self._threads,
                                                    thread_name_prefix="smallguard-verifier")
        return self._pool

    def _inline(self, bound: BoundVerifier, prediction: Prediction, context: Mapping[str, str],
                budget_ms: float) -> VerifierOutcome:
        paused = self._pauses.in_this_thread_ns()
        started = time.thread_time_ns()
        try:
            result = bound.verifier.check(prediction, context)
        except Exception as error:
            return _raised(bound, error)
        spent_ms = max(0.0, (time.thread_time_ns() - started - (self._pauses.in_this_thread_ns() - paused)) / 1e6)
        return _judged(bound, result, spent_ms, budget_ms)


def _judged(bound: BoundVerifier, result: object, spent_ms: float, budget_ms: float) -> VerifierOutcome:
    """An inline verifier's outcome: what it returned, unless it ran for longer than its budget."""
    if spent_ms > budget_ms:
        log.warning("verifier %s ran for %.1f ms of CPU, over its budget of %.0f ms", bound.spec.name, spent_ms,
                    budget_ms)
        return _outcome(bound, Status.ERROR, f"ran for {spent_ms:.1f} ms, over its time budget of {budget_ms:g} ms",
                        spent_ms)
    return _checked(bound, result, spent_ms)


def _timed_check(verifier: Verifier, prediction: Prediction, context: Mapping[str, str]) -> tuple[object, float]:
    started = time.perf_counter()
    result = verifier.check(prediction, context)
    return result, (time.perf_counter() - started) * 1000.0


def _from_future(bound: BoundVerifier, future: Future, budget_ms: float) -> VerifierOutcome:
    if not future.done():
        future.cancel()
        log.warning("verifier %s did not finish within %.0f ms", bound.spec.name, budget_ms)
        return _outcome(bound, Status.ERROR, f"did not finish within its time budget of {budget_ms:g} ms", budget_ms)
    error = future.exception()
    if error is not None:
        return _raised(bound, error)
    result, duration_ms = future.result()
    return _checked(bound, result, duration_ms)


def _raised(bound: BoundVerifier, error: BaseException) -> VerifierOutcome:
    log.warning("verifier %s raised %s: %s", bound.spec.name, type(error).__name__, error)
    return _outcome(bound, Status.ERROR, f"raised {type(error).__name__}: {error}", 0.0)


def _checked(bound: BoundVerifier, result: object, duration_ms: float) -> VerifierOutcome:
    if not isinstance(result, CheckResult) or result.status is Status.ERROR:
        return _outcome(bound, Status.ERROR, f"returned {result!r}; expected a CheckResult that passed, failed or "
                                             "skipped", duration_ms)
    return _outcome(bound, result.status, result.message, duration_ms)


def _outcome(bound: BoundVerifier, status: Status, message: str, duration_ms: float) -> VerifierOutcome:
    spec = bound.spec
    return VerifierOutcome(spec.name, spec.use, status, message, spec.on_fail, duration_ms)
