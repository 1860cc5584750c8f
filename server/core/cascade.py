"""The cascade: a request the small model escalates goes to the bundle's tiers in turn until one answers.

Every tier's prediction is checked by the bundle's own verifiers, exactly as the small model's is;
a tier's own judgement (its calibration and threshold, a remote guard's decision) counts too, and
the most severe outcome wins. Inside the cascade a low confidence moves the request on rather than
abstaining: the next tier is the stronger one. A tier without calibration (an LLM) may answer only
when the bundle opts in (``answer_uncalibrated: true``) and every verifier passes; its answer says
UNCALIBRATED. The last tier tried decides the response.

A tier that fails (times out, refuses, is down, answers nonsense), whose circuit is open, that is
at its concurrency limit, or for which the caller's deadline leaves no time, gives a TIER_ERROR
reason naming it, and the cascade goes on. Nothing here raises for a tier's sake.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from opentelemetry import trace

from smallguard.server.core.models import LoadedModel
from smallguard.server.core.policy import decide
from smallguard.server.core.review import ReviewTier, review_entry
from smallguard.server.core.tiers import CircuitBreaker, Tier, TierAnswer, TierError
from smallguard.server.core.verifier_runner import VerifierRunner
from smallguard.server.domain.errors import StoreError
from smallguard.server.domain.predictions import (
    Decision,
    PredictCall,
    PredictOutcome,
    Reason,
    ReasonCode,
    TierOutcome,
)
from smallguard.server.observability.instruments import GuardMetrics

log = logging.getLogger(__name__)
# Kept back from the caller's deadline for the response to reach it (and a timeout's own lateness).
DEADLINE_MARGIN_S = 0.05


@dataclass
class TierSlot:
    """One tier with what guards it: its circuit breaker and its concurrency limit."""

    tier: Tier
    breaker: CircuitBreaker
    slots: threading.BoundedSemaphore

    @classmethod
    def around(cls, tier: Tier) -> TierSlot:
        return cls(tier, CircuitBreaker(tier.spec.circuit), threading.BoundedSemaphore(tier.spec.max_concurrency))


class Cascade:
    """The escalation tiers of one bundle, in order."""

    def __init__(self, model: LoadedModel, tiers: Sequence[Tier], runner: VerifierRunner,
                 metrics: GuardMetrics) -> None:
        self.model = model
        self.slots = tuple(TierSlot.around(tier) for tier in tiers)
        self._runner = runner
        self._metrics = metrics
        self._tracer = trace.get_tracer("smallguard")  # the provider's when installed: see Guard

    def run(self, call: PredictCall, small: PredictOutcome, span: trace.Span | None) -> PredictOutcome:
        """The response to ``call`` once the small model said ESCALATE (``small``): each tier in turn, within
        the request's caps and deadline, until one answers."""
        entries = [_entry_of_model(self.model, small)]
        final = small
        total = 0.0
        case = 0
        allowed = len(self.slots) if call.max_tier is None else min(call.max_tier, len(self.slots))
        for slot in self.slots[:allowed]:
            spec = slot.tier.spec
            if call.max_cost is not None and total + spec.cost > call.max_cost + 1e-12:
                continue  # over the request's budget: not called, nothing to report but the cost it kept
            if isinstance(slot.tier, ReviewTier):  # the last resort: a person, through a case in the queue
                entry, case = self._review(slot.tier, call, final, entries)
            elif span is None:
                entry = self._try(slot, call, small.request_id)
            else:
                with self._tracer.start_as_current_span("smallguard.tier.call") as tier_span:
                    entry = self._try(slot, call, small.request_id)
                    _annotate(tier_span, entry)
            entries.append(entry)
            total += entry.cost
            if entry.prediction is not None:
                final = self._outcome_of(small, entry)
            if entry.decision is Decision.ANSWER:
                break
            if entry.calls == 0 and _no_time(call):
                break  # the deadline has passed: no later tier can be called either
        if len(entries) == 1:
            return small  # no tier was called (capped): the small model's outcome stands as it was
        last = entries[-1]
        decision = last.decision
        reasons = last.reasons if decision is Decision.ANSWER else tuple(r for e in entries for r in e.reasons)
        return replace(final, decision=decision, reasons=reasons, tiers=tuple(entries), cost=total,
                       answered_by=final.answered_by or self.model.spec.name, review_case=case)

    def _review(self, tier: ReviewTier, call: PredictCall, current: PredictOutcome,
                entries: list[TierOutcome]) -> tuple[TierOutcome, int]:
        """Open a review case for the request: what the caller gets (``current``) and every tier's answer."""
        spec, model = tier.spec, self.model.spec
        started = time.perf_counter()
        if tier.queue is None:
            return review_entry(spec, None, "no case opened: this guard keeps no store (an offline replay)"), 0
        try:
            case = tier.queue.open(call, replace(current, reasons=tuple(r for e in entries for r in e.reasons)),
                                   entries)
        except StoreError as error:
            self._metrics.record_tier(model.name, model.version, spec.name, "error", 0, 0.0,
                                      time.perf_counter() - started)
            return review_entry(spec, None, f"no case opened: {error}"), 0
        self._metrics.record_tier(model.name, model.version, spec.name, "review", 1, spec.cost,
                                  time.perf_counter() - started)
        return review_entry(spec, case), case

    def _try(self, slot: TierSlot, call: PredictCall, request_id: str) -> TierOutcome:
        spec = slot.tier.spec
        model = self.model.spec
        remaining = _remaining(call)
        if remaining is not None and remaining <= 0:
            return self._not_called(slot, "no_time", "not called: the caller's deadline leaves no time for it")
        if not slot.breaker.allow():
            return self._not_called(slot, "circuit_open", f"not called: its circuit is open after failed calls; "
                                                          f"a trial call in {slot.breaker.reopens_in():.1f}s")
        if not slot.slots.acquire(blocking=False):
            return self._not_called(slot, "busy", f"not called: {spec.max_concurrency} calls already in flight "
                                                  "(max_concurrency)")
        started = time.perf_counter()
        timeout = spec.timeout_ms / 1000.0 if remaining is None else min(spec.timeout_ms / 1000.0, remaining)
        try:
            answer = slot.tier.ask(call, request_id, timeout)
        except TierError as error:
            slot.breaker.failed()
            return self._failed(slot, str(error), error.calls, started)
        except Exception as error:  # a tier kind's own bug must not become INTERNAL for the caller
            log.exception("tier %s of model %s failed", spec.name, model.name)
            slot.breaker.failed()
            return self._failed(slot, f"failed: {type(error).__name__}: {error}", 1, started)
        finally:
            slot.slots.release()
        slot.breaker.succeeded()
        entry = self._judge(slot, answer, call, started)
        outcome = "answer" if entry.decision is Decision.ANSWER else "declined"
        self._metrics.record_tier(model.name, model.version, spec.name, outcome, entry.calls, entry.cost,
                                  entry.latency_ms / 1000.0)
        return entry

    def _judge(self, slot: TierSlot, answer: TierAnswer, call: PredictCall, started: float) -> TierOutcome:
        """The tier's answer under the bundle's verifiers and the tier's own judgement: the most severe wins."""
        spec = slot.tier.spec
        policy = self.model.spec.policy
        outcomes = self._runner.run(self.model.verifiers, answer.prediction, call.context, policy.verifier_timeout_ms)
        checked, verifier_reasons = decide(1.0, 0.0, Decision.ESCALATE, outcomes, calibrated=True)
        decision = max(answer.decision, checked)
        reasons = answer.reasons + verifier_reasons
        if not answer.calibrated:
            if not any(r.code is ReasonCode.UNCALIBRATED for r in reasons):
                reasons += (Reason(ReasonCode.UNCALIBRATED, f"tier {spec.name} has no calibration: its confidence "
                                                            "is not a probability", spec.name),)
            if decision is Decision.ANSWER and not spec.answer_uncalibrated:
                decision = Decision.ESCALATE
                reasons += (Reason(ReasonCode.UNCALIBRATED, f"tier {spec.name} is uncalibrated and the bundle "
                                   "does not let it answer (answer_uncalibrated: true)", spec.name),)
        return TierOutcome(
            name=spec.name, kind=spec.kind, decision=decision, prediction=answer.prediction,
            calibrated=answer.calibrated, confidence=answer.confidence, raw_confidence=answer.raw_confidence,
            threshold=answer.threshold, reasons=reasons, verifiers=outcomes,
            latency_ms=(time.perf_counter() - started) * 1000.0, cost=answer.calls * spec.cost, calls=answer.calls)

    def _failed(self, slot: TierSlot, problem: str, calls: int, started: float) -> TierOutcome:
        spec = slot.tier.spec
        elapsed = time.perf_counter() - started
        model = self.model.spec
        self._metrics.record_tier(model.name, model.version, spec.name, "error", calls, calls * spec.cost, elapsed)
        return _error_entry(slot, problem, calls, elapsed * 1000.0)

    def _not_called(self, slot: TierSlot, outcome: str, problem: str) -> TierOutcome:
        model = self.model.spec
        self._metrics.record_tier(model.name, model.version, slot.tier.spec.name, outcome, 0, 0.0, None)
        return _error_entry(slot, problem, 0, 0.0)

    def _outcome_of(self, small: PredictOutcome, entry: TierOutcome) -> PredictOutcome:
        assert entry.prediction is not None
        return replace(small, prediction=entry.prediction, confidence=entry.confidence,
                       raw_confidence=entry.raw_confidence, threshold=entry.threshold, verifiers=entry.verifiers,
                       answered_by=entry.name)

    def close(self) -> None:
        for slot in self.slots:
            slot.tier.close()


def _entry_of_model(model: LoadedModel, small: PredictOutcome) -> TierOutcome:
    return TierOutcome(
        name=model.spec.name, kind="model", decision=small.decision, prediction=small.prediction,
        calibrated=model.calibration is not None, confidence=small.confidence, raw_confidence=small.raw_confidence,
        threshold=small.threshold, reasons=small.reasons, verifiers=small.verifiers, latency_ms=0.0, cost=0.0, calls=0)


def _error_entry(slot: TierSlot, problem: str, calls: int, latency_ms: float) -> TierOutcome:
    spec = slot.tier.spec
    return TierOutcome(
        name=spec.name, kind=spec.kind, decision=Decision.ESCALATE, prediction=None, calibrated=False,
        confidence=0.0, raw_confidence=0.0, threshold=0.0,
        reasons=(Reason(ReasonCode.TIER_ERROR, f"tier {spec.name} ({spec.kind}): {problem}", spec.name),),
        verifiers=(), latency_ms=latency_ms, cost=calls * spec.cost, calls=calls)


def _remaining(call: PredictCall) -> float | None:
    """Seconds left for tiers before the caller's deadline (less the response's margin); None: no deadline."""
    if call.deadline is None:
        return None
    return call.deadline - time.monotonic() - DEADLINE_MARGIN_S


def _no_time(call: PredictCall) -> bool:
    remaining = _remaining(call)
    return remaining is not None and remaining <= 0


def _annotate(span: trace.Span, entry: TierOutcome) -> None:
    span.set_attributes({
        "smallguard.tier.name": entry.name,
        "smallguard.tier.kind": entry.kind,
        "smallguard.tier.decision": entry.decision.name,
        "smallguard.tier.calls": entry.calls,
        "smallguard.tier.cost": entry.cost,
        "smallguard.tier.confidence": entry.confidence if math.isfinite(entry.confidence) else 0.0,
        "smallguard.reasons": [r.code.value for r in entry.reasons],
    })
    errors = [r.message for r in entry.reasons if r.code is ReasonCode.TIER_ERROR]
    if errors:
        span.set_status(trace.Status(trace.StatusCode.ERROR, errors[0]))
