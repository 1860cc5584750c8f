"""Runs a bundle's verifiers on one prediction, each within the bundle's time budget.

Verifiers are operators' code. One that raises, returns nonsense or overruns its budget
counts as an ERROR (the decision then fails closed) and never takes the request, or the
server, down with it. They run on a shared pool so that a verifier stuck in a loop costs a
pool thread, not the caller's request: the request returns when the budget is spent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from types import MappingProxyType

from smallguard.server.bundle.loader import BoundVerifier
from smallguard.server.domain.predictions import VerifierOutcome
from smallguard.verifiers import CheckResult, Prediction, Status, Verifier

log = logging.getLogger(__name__)


class VerifierRunner:
    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="smallguard-verifier")

    def run(
        self,
        verifiers: Sequence[BoundVerifier],
        prediction: Prediction,
        context: Mapping[str, str],
        budget_ms: float,
    ) -> tuple[VerifierOutcome, ...]:
        """Run every verifier (always all of them, so catch rates can be measured)."""
        if not verifiers:
            return ()
        frozen_context = MappingProxyType(dict(context))
        futures = [self._pool.submit(_timed_check, bound.verifier, prediction, frozen_context)
                   for bound in verifiers]
        wait_for(futures, timeout=budget_ms / 1000.0)
        return tuple(_outcome(bound, future, budget_ms) for bound, future in zip(verifiers, futures, strict=True))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _timed_check(verifier: Verifier, prediction: Prediction, context: Mapping[str, str]) -> tuple[object, float]:
    started = time.perf_counter()
    result = verifier.check(prediction, context)
    return result, (time.perf_counter() - started) * 1000.0


def _outcome(bound: BoundVerifier, future: Future, budget_ms: float) -> VerifierOutcome:
    spec = bound.spec

    def outcome(status: Status, message: str, duration_ms: float) -> VerifierOutcome:
        return VerifierOutcome(spec.name, spec.use, status, message, spec.on_fail, duration_ms)

    if not future.done():
        future.cancel()
        log.warning("verifier %s did not finish within %.0f ms", spec.name, budget_ms)
        return outcome(Status.ERROR, f"did not finish within its time budget of {budget_ms:g} ms", budget_ms)
    error = future.exception()
    if error is not None:
        log.warning("verifier %s raised %s: %s", spec.name, type(error).__name__, error)
        return outcome(Status.ERROR, f"raised {type(error).__name__}: {error}", 0.0)
    result, duration_ms = future.result()
    if not isinstance(result, CheckResult) or result.status is Status.ERROR:
        return outcome(Status.ERROR, f"returned {result!r}; expected a CheckResult that passed, failed or "
                                     "skipped", duration_ms)
    return outcome(result.status, result.message, duration_ms)
